// Public surface of drover's libvirt remote-protocol client (usable without the rest of drover).
export * from './errors.js';
export * from './libvirt-client.js';
export * from './packet-decoder.js';
export * from './remote-protocol.js';
export {
  DEFAULT_CALL_TIMEOUT_MS,
  RpcConnection,
  type RpcConnectionEvents,
  type RpcConnectionOptions,
} from './rpc-connection.js';
export { RpcStream, STREAM_CHUNK_BYTES, type RpcStreamOptions, type StreamTransport } from './rpc-stream.js';
export { openTransport, sshArgv, tlsFiles, type TlsFiles, type TransportOptions } from './transport.js';
export { TypedEmitter } from './typed-emitter.js';
export * from './uri.js';
export { XdrReader, XdrWriter } from './xdr.js';
