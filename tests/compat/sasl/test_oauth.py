"""SASL/OAUTHBEARER (RFC 7628, KIP-255) against laminar, configured as Kafka's default: an
OAuthBearerLoginModule with unsecuredValidator* options, tokens checked as unsecured JWS
(OAuthBearerUnsecuredValidatorCallbackHandler). kcat (librdkafka's unsecured-JWT login) produces
and consumes as the token's principal; a token without the required scope is refused with
Kafka's insufficient_scope challenge; on the wire: an expired token, a token with a signature
algorithm, a bad client first message and an authorization id that is not the principal are
refused (the JSON error challenge, then SASL_AUTHENTICATION_FAILED once the client sends its
lone kvsep), and a session lasts no longer than its token (KIP-368). Then Kafka's
OAuthBearerValidatorCallbackHandler with a JWKS file (KIP-768): RS256, PS256 and ES256 tokens
with and without kid are accepted; forged claims, another key, an unknown kid, alg none, a wrong
audience or issuer, an expired token, no iat and a future nbf are refused; confluent-kafka's
oauth_cb produces and consumes with a signed token. Then the JWKS from an https endpoint (a
test CA): fetched at start, fetched again when a token names an unknown kid (a key rotation),
the held keys kept while the endpoint fails.

    /usr/bin/python3 test_oauth.py --io uring|epoll
"""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, HERE)
from compat_util import check, run_scenario  # noqa: E402
from kafka_wire import Conn  # noqa: E402
from test_sasl import SaslBroker, authenticate, closed, handshake, PLAIN_JAAS  # noqa: E402

SASL_AUTHENTICATION_FAILED = 58
REAUTH_MS = 60000


def config():
    return {
        "num.partitions": "1",
        "sasl.enabled.mechanisms": "OAUTHBEARER,PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            "unsecuredValidatorRequiredScope=\"kafka\" "
            "unsecuredValidatorAllowableClockSkewMs=\"1000\";",
        "connections.max.reauth.ms": str(REAUTH_MS),
    }


def b64(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")


def jws(claims, header=None):
    return b64(header or {"alg": "none"}) + b"." + b64(claims) + b"."


def first(token, authzid=None):
    gs2 = b"n," + (b"a=" + authzid.encode() if authzid else b"") + b","
    return gs2 + b"\x01auth=Bearer " + token + b"\x01\x01"


def kcat(b, config, *args, stdin=None):
    cmd = ["kcat", "-b", b.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
           "-X", "sasl.mechanism=OAUTHBEARER", "-X", "enable.sasl.oauthbearer.unsecure.jwt=true",
           "-X", "sasl.oauthbearer.config=" + config, "-X", "socket.timeout.ms=8000",
           "-m", "8"] + list(args)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=40)
    return p.returncode, p.stdout.decode(), p.stderr.decode(errors="replace")


def check_kcat(b):
    ok_conf = "principal=alice scope=kafka,other lifeSeconds=600"
    lines = ["oauth-%d" % i for i in range(20)]
    rc, _, err = kcat(b, ok_conf, "-P", "-t", "oauth", stdin=("\n".join(lines) + "\n").encode())
    check(rc == 0, "kcat OAUTHBEARER produce: %s" % err[-400:])
    rc, out, err = kcat(b, ok_conf, "-C", "-t", "oauth", "-e", "-q", "-f", "%s\\n")
    check(rc == 0 and out.split() == lines, "kcat OAUTHBEARER read back: %s %s" % (out, err))
    print("ok: kcat OAUTHBEARER as alice produced and consumed 20 records")
    rc, _, err = kcat(b, "principal=mallory scope=other lifeSeconds=600", "-P", "-t", "oauth",
                      stdin=b"must-not-exist\n")
    check(rc != 0, "kcat without the required scope wrote")
    check("insufficient_scope" in err or "Authentication failed" in err,
          "kcat without scope: %s" % err[-400:])
    rc, out, _ = kcat(b, ok_conf, "-C", "-t", "oauth", "-e", "-q", "-f", "%s\\n")
    check("must-not-exist" not in out, "a refused client wrote")
    print("ok: kcat without the required scope refused")


def refused(b, token_first, what, challenge_status=None):
    """Sends one client first message; a refused token gets the JSON challenge (error 0), the
    lone kvsep then SASL_AUTHENTICATION_FAILED and the close; a bad message fails at once."""
    c = Conn(b.host, b.port, "oauth-wire")
    err, _ = handshake(c, "OAUTHBEARER")
    check(err == 0, "%s: handshake %d" % (what, err))
    err, msg, tok, _ = authenticate(c, token_first)
    if challenge_status is not None:
        check(err == 0, "%s: first answer error %d %r" % (what, err, msg))
        check(json.loads(tok.decode())["status"] == challenge_status,
              "%s: challenge %r" % (what, tok))
        err, msg, _, _ = authenticate(c, b"\x01")
    check(err == SASL_AUTHENTICATION_FAILED, "%s: error %d (%r)" % (what, err, msg))
    check(closed(c), "%s: connection left open" % what)
    print("ok: %s refused (%s)" % (what, msg))


def check_wire(b):
    now = time.time()
    good = {"sub": "carol", "iat": now, "exp": now + 600, "scope": ["kafka"]}
    # accepted, and the session ends with the token (KIP-368), well before the reauth time
    c = Conn(b.host, b.port, "oauth-wire")
    check(handshake(c, "OAUTHBEARER")[0] == 0, "handshake")
    short = dict(good, exp=now + 5)
    err, msg, tok, life = authenticate(c, first(jws(short)))
    check(err == 0 and tok == b"", "good token refused: %d %r %r" % (err, msg, tok))
    check(0 < life <= 5000, "session lifetime %d ms for a token that ends in 5 s" % life)
    c.send(3, 1, b"\xff\xff\xff\xff")  # Metadata v1, all topics: served once authenticated
    check(c.response(none_on_close=True) is not None, "Metadata after OAUTHBEARER")
    c.close()
    c = Conn(b.host, b.port, "oauth-wire")
    handshake(c, "OAUTHBEARER")
    err, _, _, life = authenticate(c, first(jws(good), authzid="carol"))
    check(err == 0 and REAUTH_MS - 5000 < life <= REAUTH_MS,
          "authzid equal to the principal: %d, lifetime %d" % (err, life))
    c.close()
    refused(b, first(jws(dict(good, exp=now - 60))), "expired token", "invalid_token")
    refused(b, first(jws(dict(good, iat=now + 600, exp=now + 1200))), "token issued later",
            "invalid_token")
    refused(b, first(jws({k: v for k, v in good.items() if k != "exp"})), "token without exp",
            "invalid_token")
    refused(b, first(jws({k: v for k, v in good.items() if k != "sub"})), "token without sub",
            "invalid_token")
    refused(b, first(jws(good, header={"alg": "HS256"})), "signed token (alg HS256)",
            "invalid_token")
    refused(b, first(jws(dict(good, scope="other things"))), "token without scope kafka",
            "insufficient_scope")
    refused(b, first(b"not-a-jws"), "not a JWS", "invalid_token")
    refused(b, first(jws(good), authzid="dave"), "authorization id not the principal")
    refused(b, b"n,,\x01auth=Basic abc\x01\x01", "Basic scheme")
    refused(b, b"n,,\x01\x01", "no auth")
    refused(b, b"garbage", "not a GS2 message")


def scenario(b):
    check_wire(b)
    check_kcat(b)
    check(b.alive(), "broker died")
    check(b.stop() == 0, "broker exit status")
    check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")


# ---- signed tokens: OAuthBearerValidatorCallbackHandler with a JWKS file (KIP-768) ----------

ISSUER = "https://issuer.test"
AUDIENCE = "kafka-broker"


class Signer:
    """An RSA and an EC P-256 key, the JWKS of their public halves, and tokens they sign."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @staticmethod
    def _b64int(n, size=None):
        raw = n.to_bytes(size or (n.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def jwks(self):
        rn = self.rsa.public_key().public_numbers()
        en = self.ec.public_key().public_numbers()
        return {"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},  # skipped: not a public key
            {"kty": "RSA", "kid": "r1", "use": "sig", "n": self._b64int(rn.n),
             "e": self._b64int(rn.e)},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": self._b64int(en.x, 32),
             "y": self._b64int(en.y, 32)}]}

    def token(self, claims, alg="RS256", kid=None, key=None):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, utils
        header = {"alg": alg, "typ": "JWT"}
        if kid:
            header["kid"] = kid
        signing_input = b64(header) + b"." + b64(claims)
        if alg == "RS256":
            sig = (key or self.rsa).sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256":
            sig = (key or self.rsa).sign(signing_input, padding.PSS(
                mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
        else:
            der = self.ec.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = utils.decode_dss_signature(der)
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")


def jwks_config(path):
    c = config()
    c["listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class"] = \
        "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
    c["sasl.oauthbearer.jwks.endpoint.url"] = "file://" + path
    c["sasl.oauthbearer.expected.audience"] = "other-service, " + AUDIENCE
    c["sasl.oauthbearer.expected.issuer"] = ISSUER
    c["sasl.oauthbearer.clock.skew.seconds"] = "5"
    return c


def accepted(b, token_first, what, principal):
    c = Conn(b.host, b.port, "oauth-jwks")
    check(handshake(c, "OAUTHBEARER")[0] == 0, "%s: handshake" % what)
    err, msg, tok, _ = authenticate(c, token_first)
    check(err == 0 and tok == b"", "%s refused: %d %r %r" % (what, err, msg, tok))
    c.close()
    print("ok: %s accepted (principal %s)" % (what, principal))


def jwks_scenario(b, signer):
    now = time.time()
    good = {"sub": "svc-a", "iat": now, "exp": now + 600, "iss": ISSUER,
            "aud": [AUDIENCE, "x"]}
    accepted(b, first(signer.token(good, kid="r1")), "RS256 token with kid", "svc-a")
    accepted(b, first(signer.token(dict(good, aud=AUDIENCE))), "RS256 token without kid",
             "svc-a")
    accepted(b, first(signer.token(good, alg="PS256", kid="r1")), "PS256 token", "svc-a")
    accepted(b, first(signer.token(good, alg="ES256", kid="e1")), "ES256 token", "svc-a")
    accepted(b, first(signer.token(dict(good, exp=now - 2))), "token expired within the skew",
             "svc-a")
    tok = signer.token(good, kid="r1")
    head, body, sig = tok.split(b".")
    forged = head + b"." + b64(dict(good, sub="admin")) + b"." + sig
    refused(b, first(forged), "claims changed under the signature", "invalid_token")
    refused(b, first(signer.token(good, kid="r1", key=signer.other)), "signed by another key",
            "invalid_token")
    refused(b, first(signer.token(good, kid="nope")), "unknown kid", "invalid_token")
    refused(b, first(signer.token(good, alg="ES256", kid="r1")), "kid of another key type",
            "invalid_token")
    refused(b, first(jws(good)), "unsigned token (alg none)", "invalid_token")
    refused(b, first(signer.token(dict(good, aud="someone-else"))), "wrong audience",
            "invalid_token")
    refused(b, first(signer.token(dict(good, iss="https://evil.test"))), "wrong issuer",
            "invalid_token")
    refused(b, first(signer.token(dict(good, exp=now - 60))), "expired token", "invalid_token")
    refused(b, first(signer.token({k: v for k, v in good.items() if k != "iat"})),
            "token without iat", "invalid_token")
    refused(b, first(signer.token(dict(good, nbf=now + 600))), "token not valid yet (nbf)",
            "invalid_token")
    # a real client: confluent-kafka's oauth_cb hands librdkafka the signed token
    from confluent_kafka import Consumer, Producer

    def oauth_cb(_config):
        t = time.time()
        return signer.token({"sub": "svc-b", "iat": t, "exp": t + 300, "iss": ISSUER,
                             "aud": AUDIENCE}, kid="e1", alg="ES256").decode(), t + 300

    conf = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "OAUTHBEARER", "oauth_cb": oauth_cb}
    p = Producer(dict(conf))
    for i in range(10):
        p.produce("jwks", ("signed-%d" % i).encode())
    check(p.flush(30) == 0, "confluent-kafka with a signed token: not all delivered")
    c = Consumer(dict(conf, **{"group.id": "jwks", "auto.offset.reset": "earliest"}))
    c.subscribe(["jwks"])
    got, deadline = [], time.monotonic() + 30
    while len(got) < 10 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    check(got == ["signed-%d" % i for i in range(10)], "read back %r" % got)
    print("ok: confluent-kafka (oauth_cb, ES256) produced and consumed 10 records")
    check(b.alive(), "broker died")
    check(b.stop() == 0, "broker exit status")
    check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")


class JwksServer:
    """An https JWKS endpoint on loopback (a test CA signs its certificate for 127.0.0.1): it
    serves `doc` as JSON, or the status in `fail`; `hits` counts the requests."""

    def __init__(self, d):
        import http.server
        import ssl
        import threading
        for args in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                      "-out", "ca.pem", "-days", "2", "-subj", "/CN=jwks test ca"],
                     ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out",
                      "srv.csr", "-subj", "/CN=127.0.0.1"]):
            subprocess.run(["openssl"] + args, cwd=d, check=True, capture_output=True)
        with open(os.path.join(d, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        subprocess.run(["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
                        "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "2",
                        "-extfile", "san.ext"], cwd=d, check=True, capture_output=True)
        self.ca = os.path.join(d, "ca.pem")
        self.doc, self.fail, self.hits = {"keys": []}, None, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.hits += 1
                if outer.fail:
                    self.send_response(outer.fail)
                    self.end_headers()
                    return
                body = json.dumps(outer.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = "https://127.0.0.1:%d/jwks.json" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def eventually_accepted(b, make, what, timeout=10):
    """A token refused at first (its kid not fetched yet) is accepted once the broker has
    fetched the keys again, as a client retrying its authentication sees."""
    deadline = time.monotonic() + timeout
    while True:
        c = Conn(b.host, b.port, "oauth-jwks")
        check(handshake(c, "OAUTHBEARER")[0] == 0, "%s: handshake" % what)
        err, msg, tok, _ = authenticate(c, first(make()))
        c.close()
        if err == 0 and tok == b"":
            print("ok: %s accepted" % what)
            return
        check(time.monotonic() < deadline, "%s still refused after %d s" % (what, timeout))
        time.sleep(0.3)


def jwks_http_scenario(b, signer, srv):
    """JWKS from an https endpoint: fetched at start, fetched again at once (within the
    retry backoff) when a token names a kid the keys lack, as after the issuer rotated its
    keys; a failing endpoint leaves the keys the broker holds."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    now = time.time()
    good = {"sub": "svc-h", "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
    check(srv.hits >= 1, "the JWKS was not fetched at start")
    accepted(b, first(signer.token(good, kid="r1")), "RS256 token, JWKS over https", "svc-h")
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rn = rotated.public_key().public_numbers()
    srv.doc = {"keys": [{"kty": "RSA", "kid": "r2", "use": "sig", "n": signer._b64int(rn.n),
                         "e": signer._b64int(rn.e)}]}
    hits = srv.hits
    eventually_accepted(b, lambda: signer.token(good, kid="r2", key=rotated),
                        "a token of the rotated key r2")
    check(srv.hits > hits, "no fetch after the unknown kid")
    refused(b, first(signer.token(good, kid="r1")), "the retired key r1 after the rotation",
            "invalid_token")
    srv.fail = 503
    hits = srv.hits
    # an unknown kid asks for a fetch at most once per retry backoff (100 ms): the one the
    # retired r1 caused may have just happened, so the token is tried until a fetch fails
    deadline = time.monotonic() + 10
    while "keeping the 1 keys held" not in b.log_text() and time.monotonic() < deadline:
        refused(b, first(signer.token(good, kid="r3")),
                "an unknown kid while the endpoint fails", "invalid_token")
        time.sleep(0.3)
    check(srv.hits > hits and "keeping the 1 keys held" in b.log_text(),
          "the failed fetch was not reported")
    accepted(b, first(signer.token(good, kid="r2", key=rotated)),
             "r2 while the endpoint fails (the held keys)", "svc-h")
    srv.fail = None
    check(b.alive(), "broker died")
    check(b.stop() == 0, "broker exit status")
    check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    b = SaslBroker(args.io, config=config())
    rc = run_scenario(b, "oauthbearer (%s)" % args.io, lambda: scenario(b))
    signer = Signer()
    d = tempfile.mkdtemp(prefix="laminar-test-jwks-")
    try:
        path = os.path.join(d, "jwks.json")
        with open(path, "w") as f:
            json.dump(signer.jwks(), f)
        j = SaslBroker(args.io, config=jwks_config(path))
        rc |= run_scenario(j, "oauthbearer with a JWKS (%s)" % args.io,
                           lambda: jwks_scenario(j, signer))
        srv = JwksServer(d)
        with open(path, "w") as f:
            json.dump(signer.jwks(), f)
        srv.doc = signer.jwks()
        conf = jwks_config(path)
        conf.update({"sasl.oauthbearer.jwks.endpoint.url": srv.url,
                     "laminar.oauthbearer.jwks.ssl.truststore.location": srv.ca,
                     "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms": "100",
                     "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms": "1000"})
        h = SaslBroker(args.io, config=conf)
        try:
            rc |= run_scenario(h, "oauthbearer with a JWKS over https (%s)" % args.io,
                               lambda: jwks_http_scenario(h, signer, srv))
        finally:
            srv.stop()
        return rc
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
