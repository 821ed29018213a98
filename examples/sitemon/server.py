#!/usr/bin/env python3
"""A small threaded HTTP/1.1 WSGI server for the sitemon sample app.

Why not `manage.py runserver` or wsgiref.simple_server: both answer one
request per connection at best and neither accepts chunked request bodies,
while restspy keeps upstream connections alive, pipelines nothing but reuses
them, and forwards chunked uploads. This server (standard library only):

  * one thread per connection (ThreadingMixIn), so many keep-alive
    connections and slow requests run at once;
  * HTTP/1.1 keep-alive: requests are served in a loop on each connection
    until the client asks to close (pipelined requests are read in order);
  * request bodies by Content-Length or Transfer-Encoding: chunked, de-chunked
    before the WSGI app sees them (CONTENT_LENGTH is set to the real size);
  * responses with a known length get Content-Length; streamed ones are sent
    chunked to HTTP/1.1 clients; HEAD, 1xx, 204 and 304 responses carry no body;
  * the request line and header lines as received are kept in the environ
    (RAW_URI, "sitemon.raw_headers") so /api/echo/ can show exactly what a
    proxy forwarded, repeats and order included.

Usage: server.py HOST:PORT    (migrates the SQLite database first)
"""
import email.utils
import io
import os
import signal
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote_to_bytes

HERE = os.path.dirname(os.path.abspath(__file__))


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sitemon/1.0"
    sys_version = ""
    # An idle keep-alive connection is dropped after this many seconds.
    timeout = 300
    app = None  # the WSGI application, set by serve()

    def log_message(self, fmt, *args):
        if os.environ.get("SITEMON_VERBOSE"):
            sys.stderr.write("sitemon: %s - %s\n" % (self.address_string(), fmt % args))

    def handle_one_request(self):
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (socket.timeout, ConnectionError):
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        if not self.parse_request():
            return  # parse_request already answered the error
        try:
            self.run_wsgi()
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        try:
            self.wfile.flush()
        except (ConnectionError, socket.timeout):
            self.close_connection = True

    # ------------------------------------------------------------ body

    def read_body(self):
        te = ",".join(self.headers.get_all("Transfer-Encoding") or [])
        codings = [c.strip().lower() for c in te.split(",") if c.strip()]
        if codings:
            if codings[-1] != "chunked":
                raise BadRequest("unsupported transfer-encoding")
            return self.read_chunked(), True
        cls = self.headers.get_all("Content-Length") or []
        if not cls:
            return b"", False
        vals = {v.strip() for v in cls}
        if len(vals) != 1 or not next(iter(vals)).isdigit():
            raise BadRequest("bad content-length")
        n = int(next(iter(vals)))
        data = self.rfile.read(n)
        if len(data) != n:
            raise ConnectionError("body cut short")
        return data, False

    def read_chunked(self):
        parts = []
        while True:
            line = self.rfile.readline(1024)
            if not line.endswith(b"\n"):
                raise BadRequest("bad chunk size line")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size")
            if size == 0:
                break
            data = self.rfile.read(size)
            if len(data) != size:
                raise ConnectionError("chunk cut short")
            parts.append(data)
            if self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise BadRequest("missing CRLF after chunk")
        # Trailer section: ignored, read up to the empty line.
        while True:
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
        return b"".join(parts)

    # ------------------------------------------------------------ WSGI

    def build_environ(self, body, chunked):
        target = self.path
        path, _, query = target.partition("?")
        if "://" in path:  # absolute-form target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        host, port = self.server.server_address[:2]
        env = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            # WSGI: the percent-decoded path bytes, as latin-1 text (the
            # request line was read as latin-1, so that round-trips raw UTF-8).
            "PATH_INFO": unquote_to_bytes(path.encode("latin-1")).decode("latin-1"),
            "QUERY_STRING": query,
            "RAW_URI": target,
            "REQUEST_URI": target,
            "SERVER_NAME": str(host),
            "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": self.request_version,
            "REMOTE_ADDR": self.client_address[0],
            "REMOTE_PORT": str(self.client_address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
            "sitemon.raw_headers": list(self.headers.items()),
            "sitemon.chunked": chunked,
        }
        ctype = self.headers.get("Content-Type")
        if ctype is not None:
            env["CONTENT_TYPE"] = ctype
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue
            key = "HTTP_" + key
            env[key] = env[key] + "," + value if key in env else value
        return env

    def run_wsgi(self):
        try:
            body, chunked = self.read_body()
        except BadRequest as e:
            self.close_connection = True
            self.send_error(400, str(e))
            return
        env = self.build_environ(body, chunked)
        state = {}

        def start_response(status, headers, exc_info=None):
            if exc_info and state.get("sent"):
                raise exc_info[1].with_traceback(exc_info[2])
            state["status"] = status
            state["headers"] = headers
            return lambda data: state.setdefault("written", []).append(data)

        result = self.app(env, start_response)
        try:
            self.send_result(state, result)
        finally:
            if hasattr(result, "close"):
                result.close()

    def send_result(self, state, result):
        status = state["status"]
        code = int(status.split(" ", 1)[0])
        headers = [(k, v) for k, v in state["headers"]
                   if k.lower() not in ("connection", "transfer-encoding", "keep-alive")]
        has_len = any(k.lower() == "content-length" for k, _ in headers)
        bodiless = self.command == "HEAD" or code in (204, 304) or code < 200
        early = state.get("written", [])

        # Buffer bodies of known size (Django's HttpResponse: streaming False);
        # stream the others (StreamingHttpResponse, generators).
        streaming = getattr(result, "streaming", None)
        if streaming is None:
            streaming = not isinstance(result, (list, tuple))
        chunks = None
        if not streaming or has_len:
            chunks = early + [c for c in result if c]
            if not has_len and code not in (204, 304) and code >= 200:
                headers.append(("Content-Length", str(sum(len(c) for c in chunks))))
        use_chunked = False
        if chunks is None and code not in (204, 304) and code >= 200:
            if self.request_version == "HTTP/1.1":
                use_chunked = True
                headers.append(("Transfer-Encoding", "chunked"))
            else:
                self.close_connection = True  # body ends at close
        if self.close_connection:
            headers.append(("Connection", "close"))
        elif self.request_version == "HTTP/1.0":
            headers.append(("Connection", "keep-alive"))

        head = ["%s %s\r\n" % (self.protocol_version, status),
                "Date: %s\r\n" % email.utils.formatdate(usegmt=True),
                "Server: %s\r\n" % self.server_version]
        head += ["%s: %s\r\n" % (k, v) for k, v in headers]
        head.append("\r\n")
        state["sent"] = True
        self.wfile.write("".join(head).encode("latin-1"))
        self.log_request(code)
        if bodiless:
            if chunks is None:
                for _ in result:  # run the generator for its side effects
                    pass
            return
        if chunks is not None:
            self.wfile.write(b"".join(chunks))
            return
        for c in early:
            if c:
                self.write_piece(c, use_chunked)
        for c in result:
            if c:
                self.write_piece(c, use_chunked)
        if use_chunked:
            self.wfile.write(b"0\r\n\r\n")

    def write_piece(self, data, use_chunked):
        if use_chunked:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self.wfile.write(data)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    # Threads are daemons and not tracked: a server with thousands of past
    # connections must not keep a list of them.
    block_on_close = False


def serve(addr, app, migrate=True):
    host, _, port = addr.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit("usage: server.py HOST:PORT")
    Handler.app = app
    srv = Server((host.strip("[]"), int(port)), Handler)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    sys.stderr.write("sitemon: listening on http://%s\n" % addr)
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: server.py HOST:PORT\n")
        return 2
    sys.path.insert(0, HERE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from django.core.wsgi import get_wsgi_application

    serve(sys.argv[1], get_wsgi_application())
    return 0


if __name__ == "__main__":
    sys.exit(main())
