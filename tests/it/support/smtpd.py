"""Test SMTP server for honeyguide's integration tests (aiosmtpd; run with /usr/bin/python3).

Listeners, each optional, all on 127.0.0.1:
  --starttls-port   submission: STARTTLS required before AUTH, AUTH PLAIN/LOGIN required
  --smtps-port      implicit TLS (SMTPS), AUTH PLAIN/LOGIN required
  --login-port      implicit TLS, AUTH LOGIN only (PLAIN not offered)
  --plain-port      no TLS offered at all, AUTH optional (a relay that lacks STARTTLS)

Credentials: --user/--password succeed; the user "tempfail" gets 454 4.7.0 (temporary); any
other pair gets aiosmtpd's 535 5.7.8.

Every accepted message is stored in --maildir as NAME.eml (the DATA as received) plus NAME.json
({"mail_from", "rcpt_tos", "port"}), written to a temporary name first and renamed, so a reader
never sees half a message. NAME sorts in arrival order.
"""

import argparse
import json
import os
import signal
import ssl
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--starttls-port", type=int)
parser.add_argument("--smtps-port", type=int)
parser.add_argument("--login-port", type=int)
parser.add_argument("--plain-port", type=int)
parser.add_argument("--cert", required=True)
parser.add_argument("--key", required=True)
parser.add_argument("--user", required=True)
parser.add_argument("--password", required=True)
parser.add_argument("--maildir", required=True)
args = parser.parse_args()

USER = args.user.encode()
PASSWORD = args.password.encode()
tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
tls.load_cert_chain(args.cert, args.key)
counter_lock = threading.Lock()
counter = [0]


def authenticator(server, session, envelope, mechanism, auth_data):
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    if auth_data.login == b"tempfail":
        return AuthResult(success=False, handled=False, message="454 4.7.0 Temporary authentication failure")
    ok = auth_data.login == USER and auth_data.password == PASSWORD
    return AuthResult(success=ok, handled=False)


class Store:
    def __init__(self, port):
        self.port = port

    async def handle_DATA(self, server, session, envelope):
        with counter_lock:
            counter[0] += 1
            name = f"{time.time_ns():020d}-{counter[0]:06d}"
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode()
        meta = {"mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos), "port": self.port}
        for suffix, payload in ((".eml", data), (".json", json.dumps(meta).encode())):
            tmp = os.path.join(args.maildir, "." + name + suffix + ".tmp")
            with open(tmp, "wb") as f:
                f.write(payload)
            os.rename(tmp, os.path.join(args.maildir, name + suffix))
        return "250 OK queued"


common = dict(hostname="127.0.0.1", authenticator=authenticator, server_hostname="localhost")
controllers = []
if args.starttls_port:
    controllers.append(Controller(Store(args.starttls_port), port=args.starttls_port, tls_context=tls,
                                  require_starttls=True, auth_require_tls=True, auth_required=True, **common))
if args.smtps_port:
    controllers.append(Controller(Store(args.smtps_port), port=args.smtps_port, ssl_context=tls,
                                  auth_require_tls=False, auth_required=True, **common))
if args.login_port:
    controllers.append(Controller(Store(args.login_port), port=args.login_port, ssl_context=tls,
                                  auth_require_tls=False, auth_required=True,
                                  auth_exclude_mechanism=["PLAIN"], **common))
if args.plain_port:
    controllers.append(Controller(Store(args.plain_port), port=args.plain_port,
                                  auth_require_tls=False, auth_required=False,
                                  hostname="127.0.0.1", authenticator=authenticator))
for controller in controllers:
    controller.start()
print("ready", flush=True)
signal.sigwait({signal.SIGTERM, signal.SIGINT})
for controller in controllers:
    controller.stop()
