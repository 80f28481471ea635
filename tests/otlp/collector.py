"""An OTLP/HTTP collector for tests/otlp.rs that decodes what ccb sends with the official
OpenTelemetry protocol definitions (PyPI's opentelemetry-proto, generated from the .proto files;
scripts/install-otlp installs it), never with ccb's own code.

    collector.py OUT [--fail N] [--tls CERT KEY]

Listens on a free loopback port and prints it on stdout. Each POST to /v1/logs or /v1/metrics is
decoded by its content type (application/x-protobuf: the binary encoding; application/json:
OTLP/JSON, parsed strictly by protobuf's json_format, so an unknown or misspelled field fails) and
appended to OUT as one JSON line: {"path", "content_type", "headers", "request"} where request is
the decoded message (protobuf's own dict form, proto field names). What cannot be decoded is
answered 400 and written as {"path", "error"}. With --fail N, the first N requests are answered
503 (retryable) before anything is decoded. With --tls, it speaks HTTPS with that certificate
chain and key (PEM files). Runs until killed.
"""

import json
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

SIGNALS = {
    "/v1/logs": (ExportLogsServiceRequest, ExportLogsServiceResponse),
    "/v1/metrics": (ExportMetricsServiceRequest, ExportMetricsServiceResponse),
}

out_path = sys.argv[1]
fail_left = int(sys.argv[sys.argv.index("--fail") + 1]) if "--fail" in sys.argv else 0
lock = threading.Lock()


def write(line):
    with lock:
        with open(out_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global fail_left
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        with lock:
            fail = fail_left > 0
            fail_left -= 1 if fail else 0
        if fail:
            write({"path": self.path, "refused": 503})
            self.answer(503, b"{}")
            return
        if self.path not in SIGNALS:
            write({"path": self.path, "error": "no such signal"})
            self.answer(404, b"{}")
            return
        request_type, response_type = SIGNALS[self.path]
        content_type = self.headers.get("content-type", "")
        message = request_type()
        try:
            if content_type == "application/x-protobuf":
                message.ParseFromString(body)
            elif content_type == "application/json":
                json_format.Parse(body.decode("utf-8"), message)
            else:
                raise ValueError("content type " + content_type)
        except Exception as e:  # noqa: BLE001: any failure to decode is the finding
            write({"path": self.path, "content_type": content_type, "error": repr(e)})
            self.answer(400, b"{}")
            return
        write(
            {
                "path": self.path,
                "content_type": content_type,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "request": json_format.MessageToDict(message, preserving_proto_field_name=True),
            }
        )
        if content_type == "application/json":
            self.answer(200, json_format.MessageToJson(response_type()).encode("utf-8"))
        else:
            self.answer(200, response_type().SerializeToString(), "application/x-protobuf")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if "--tls" in sys.argv:
    i = sys.argv.index("--tls")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
