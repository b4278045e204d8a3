// libvirt's XML documents read with fast-xml-parser into a plain tree: attributes as `@_name`, text as the
// element's string value (or `#text` when the element also has attributes), repeated elements as arrays.
import { XMLBuilder, XMLParser, XMLValidator } from 'fast-xml-parser';

export type XmlNode = string | { [key: string]: XmlNode | XmlNode[] | undefined };

const ATTR = '@_';

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  // Names, paths and numbers stay strings: "007" is a name, not 7.
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: true,
  ignoreDeclaration: true,
  ignorePiTags: true,
});

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: ATTR,
  suppressEmptyNode: true,
});

/** Parses `xml` (a `what` document, named in the error) into its root element's tree. */
export function parseXml(xml: string, what: string, root: string): XmlNode {
  const valid = XMLValidator.validate(xml);
  if (valid !== true) {
    throw new Error(`${what} XML is not well-formed: ${valid.err.msg} (line ${valid.err.line})`);
  }
  const doc = parser.parse(xml) as Record<string, XmlNode | XmlNode[] | undefined>;
  return first(doc[root]) ?? '';
}

function first(value: XmlNode | XmlNode[] | undefined): XmlNode | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** The child elements called `name`, in document order. */
export function children(node: XmlNode | undefined, name: string): XmlNode[] {
  if (node === undefined || typeof node === 'string') return [];
  const value = node[name];
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** The first child element called `name`. */
export function child(node: XmlNode | undefined, name: string): XmlNode | undefined {
  return children(node, name)[0];
}

/** The element names directly inside `node` (attributes and text left out). */
export function childNames(node: XmlNode | undefined): string[] {
  if (node === undefined || typeof node === 'string') return [];
  return Object.keys(node).filter((k) => !k.startsWith(ATTR) && k !== '#text');
}

export function attr(node: XmlNode | undefined, name: string): string | null {
  if (node === undefined || typeof node === 'string') return null;
  const value = node[ATTR + name];
  return typeof value === 'string' ? value : null;
}

/** The element's text, trimmed ('' for an empty element). */
export function text(node: XmlNode | undefined): string {
  if (node === undefined) return '';
  if (typeof node === 'string') return node;
  const value = node['#text'];
  return typeof value === 'string' ? value : '';
}

/** The text of the first child called `name`, or null when there is no such child. */
export function childText(node: XmlNode | undefined, name: string): string | null {
  const c = child(node, name);
  return c === undefined ? null : text(c);
}

/** Writes `node` back as an element called `name` (attributes and children kept; the order of differently
 * named children is not). */
export function writeXml(name: string, node: XmlNode): string {
  return builder.build({ [name]: node });
}
