"""Docker registry token server for honeyguide's tests (stdlib + the openssl CLI).

usage: tokenserver.py KEY CRT PORT ISSUER USER PASSWORD

GET /token?service=..&scope=repository:NAME:ACTIONS issues an RS256 JWT whose x5c header holds
CRT (which the registry trusts through `rootcertbundle`). With Basic credentials equal to
USER:PASSWORD the token grants every requested action; without credentials it is anonymous and
grants only `pull`; wrong credentials get 401. The response carries both `token` and
`access_token`, as the token spec allows.
"""
import base64
import json
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

KEY, CRT, PORT, ISSUER, USER, PASSWORD = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


DER = subprocess.run(["openssl", "x509", "-in", CRT, "-outform", "DER"], capture_output=True, check=True).stdout


def token(subject, service, scopes, anonymous):
    header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(DER).decode()]}
    now = int(time.time())
    access = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) < 3:
            continue
        kind, name, actions = parts[0], ":".join(parts[1:-1]), parts[-1].split(",")
        if anonymous:
            actions = [a for a in actions if a == "pull"]
        access.append({"type": kind, "name": name, "actions": actions})
    claims = {"iss": ISSUER, "sub": subject, "aud": service, "exp": now + 300, "nbf": now - 10,
              "iat": now, "jti": uuid.uuid4().hex, "access": access}
    signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", KEY], input=signing_input,
                               capture_output=True, check=True).stdout
    return signing_input.decode() + "." + b64(signature)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        query = parse_qs(url.query)
        auth = self.headers.get("Authorization", "")
        subject, anonymous = "", True
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if user != USER or password != PASSWORD:
                body = b'{"details":"invalid credentials"}'
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            subject, anonymous = user, False
        issued = token(subject, query.get("service", [""])[0], query.get("scope", []), anonymous)
        body = json.dumps({"token": issued, "access_token": issued, "expires_in": 300}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
