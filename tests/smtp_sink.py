#!/usr/bin/python3
"""smtp_sink.py — a real SMTP server on loopback for capgate's email tests.

Usage: smtp_sink.py PORT DIR [--starttls CERT KEY | --implicit CERT KEY] [--auth USER:PASSWORD]

Listens on 127.0.0.1:PORT with Debian's python3-aiosmtpd and writes every
message it accepts to DIR/<n>.eml (written to a temporary name, then renamed,
so a reader never sees half a file): first the session facts as header lines
"X-Envelope-From: <addr>", one "X-Envelope-To: <addr>" per recipient,
"X-Sink-TLS: none|starttls|implicit" and "X-Sink-Auth: <login>|none", then
the message exactly as received.

--starttls: offer STARTTLS and refuse mail before it (require_starttls).
--implicit: TLS from the first byte (smtps).
--auth: require AUTH (PLAIN/LOGIN) with exactly this user and password; aiosmtpd
        only allows AUTH over TLS.

Prints "ready" on stdout once listening and runs until SIGTERM or SIGINT.
"""
import os
import signal
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.n += 1
            n = self.n
        if session.ssl is not None:
            tls = "starttls"
        elif server.transport.get_extra_info("ssl_object") is not None:
            tls = "implicit"
        else:
            tls = "none"
        login = "none"
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        head = "X-Envelope-From: %s\r\n" % envelope.mail_from
        for rcpt in envelope.rcpt_tos:
            head += "X-Envelope-To: %s\r\n" % rcpt
        head += "X-Sink-TLS: %s\r\nX-Sink-Auth: %s\r\n" % (tls, login)
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8")
        tmp = os.path.join(self.out_dir, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(head.encode("utf-8") + data)
        os.rename(tmp, os.path.join(self.out_dir, "%d.eml" % n))
        return "250 Message accepted for delivery"


class Auth:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == self.user
              and auth_data.password == self.password)
        return AuthResult(success=ok, auth_data=auth_data if ok else None)


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        sys.stderr.write(__doc__)
        return 2
    port, out_dir = int(args[0]), args[1]
    kw = {}
    i = 2
    while i < len(args):
        if args[i] in ("--starttls", "--implicit") and i + 2 < len(args):
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(args[i + 1], args[i + 2])
            if args[i] == "--starttls":
                kw.update(tls_context=ctx, require_starttls=True)
            else:
                kw.update(ssl_context=ctx)
            i += 3
        elif args[i] == "--auth" and i + 1 < len(args):
            user, _, password = args[i + 1].partition(":")
            kw.update(authenticator=Auth(user, password), auth_required=True)
            i += 2
        else:
            sys.stderr.write(__doc__)
            return 2
    ctl = Controller(Sink(out_dir), hostname="127.0.0.1", port=port, **kw)
    ctl.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    ctl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
