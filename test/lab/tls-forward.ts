// drover lab: runs inside a lab host's network namespace and forwards connections made to a unix socket
// (reachable from outside the namespace) to a TCP port on that namespace's loopback (libvirtd's TLS port).
// usage: tsx tls-forward.ts SOCKET_PATH PORT
import { createServer, connect } from 'node:net';
import { rmSync } from 'node:fs';

const [socketPath, port] = process.argv.slice(2);
if (!socketPath || !port) {
  console.error('usage: tls-forward.ts SOCKET_PATH PORT');
  process.exit(2);
}
process.title = 'tls-forward';
rmSync(socketPath, { force: true });
const server = createServer((client) => {
  const upstream = connect({ host: '127.0.0.1', port: Number(port) });
  client.pipe(upstream).pipe(client);
  const end = () => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', end);
  upstream.on('error', end);
  client.on('close', end);
  upstream.on('close', end);
});
server.listen(socketPath);
process.on('SIGTERM', () => {
  server.close();
  rmSync(socketPath, { force: true });
  process.exit(0);
});
