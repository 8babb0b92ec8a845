#!/usr/bin/python3
"""An independent Crust peer for interoperability tests.

It speaks Crust's wire protocol (crust/secure/handshake.hpp, frame.hpp,
message.hpp) using Debian's python3-dissononce for all Noise processing and
python3-cryptography for Ed25519. It must run under /usr/bin/python3, where
those Debian packages live.

Wire summary (the C++ headers are the specification):
  prologue = "CRUST" || u16be(1) || u8 len || network name
  Noise_XK_25519_ChaChaPoly_SHA256 when the dialler knows the responder's
  peer key:
    -> e, es              48 bytes (empty payload)
    <- e, ee              144 bytes (payload: identity proof)
    -> s, se              160 bytes (payload: identity proof)
  Noise_XX_25519_ChaChaPoly_SHA256 for an address-only dial:
    -> e                  48 bytes (payload: 16 random bytes, plaintext)
    <- e, ee, s, es       192 bytes (payload: identity proof)
    -> s, se              160 bytes (payload: identity proof)
  identity proof = Ed25519 id (32) || Ed25519 signature (64) over
    "crust-handshake-v1" || h || sender's X25519 static public key,
  where h is the handshake hash just before the payload is encrypted.

  frame = ENCRYPT(u16be body length) (18 bytes) || ENCRYPT(body) (len + 16),
  both with the same transport CipherState, empty associated data; a body is
  at most 65535 - 16 bytes. Each direction rekeys (Noise REKEY, nonce back to
  zero) after every 65536 frames.

  frame body = one or more records, each as u16be length || record:
    data:      u8 1 | u8 flags (1 first, 2 last, 4 signed) | u8 priority
               | [first: u32be total length | [signed: 64-byte signature]]
               | fragment bytes
    heartbeat: u8 2
    close:     u8 3 | u8 reason | UTF-8 text
    hello:     u8 4 | u8 role | u8 flags (1 bootstrap) [| u16be TCP port [| u16be UDP port]]
    admit:     u8 5 [| u16be the acceptor's UDP port]

Usage:
  noise_peer.py --role responder --port 0 --x25519-private HEX --ed25519-seed HEX
      prints "PORT <n>", accepts one connection, echoes every data message,
      answers a close record with a close record and exits 0.
  noise_peer.py --role initiator --port P [--remote-key HEX128] --sizes 0,1,70000
      dials (XK with --remote-key, XX without), sends one message per size,
      checks each echo, closes, exits 0 if every echo matched.
  noise_peer.py --print-key --x25519-private HEX --ed25519-seed HEX
      prints the 128-hex peer key (Ed25519 id then X25519 static key).

Output (stdout): "PEER <hex id of the remote>" then "HANDSHAKE XK|XX" after the
handshake, "OK <n> messages" at the end.
Exit codes: 0 success, 1 failure ("ERROR ..." on stderr), 3 timeout,
2 bad command line (argparse).
"""

import argparse
import logging
import os
import signal
import socket
import struct
import sys

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
    from dissononce.cipher.chachapoly import ChaChaPolyCipher
    from dissononce.dh.x25519.private import PrivateKey as X25519PrivateKey
    from dissononce.dh.x25519.public import PublicKey as X25519PublicKey
    from dissononce.dh.x25519.x25519 import X25519DH
    from dissononce.exceptions.decrypt import DecryptFailedException
    from dissononce.hash.sha256 import SHA256Hash
    from dissononce.processing.handshakepatterns.interactive.XK import XKHandshakePattern
    from dissononce.processing.handshakepatterns.interactive.XX import XXHandshakePattern
    from dissononce.processing.impl.cipherstate import CipherState
    from dissononce.processing.impl.handshakestate import HandshakeState
    from dissononce.processing.impl.symmetricstate import SymmetricState
except ImportError as exc:  # pragma: no cover - environment problem
    sys.stderr.write("ERROR cannot import dissononce/cryptography (%s); "
                     "run this script with /usr/bin/python3\n" % exc)
    sys.exit(1)

logging.getLogger("dissononce").setLevel(logging.WARNING)

# --- protocol constants (from crust/secure/*.hpp and handshake.cpp) ----------

PROTOCOL_VERSION = 1
MAX_NETWORK_NAME = 255
PROOF_DOMAIN = b"crust-handshake-v1"
TAG = 16
PROOF_SIZE = 32 + 64
FIRST_MESSAGE_SIZE = 48
XX_PADDING = 16
XK_SECOND_SIZE = 32 + PROOF_SIZE + TAG                    # 144
XX_SECOND_SIZE = 32 + 32 + TAG + PROOF_SIZE + TAG         # 192
THIRD_SIZE = 32 + TAG + PROOF_SIZE + TAG                  # 160

FRAME_HEADER = 2 + TAG
MAX_FRAME_BODY = 65535 - TAG
REKEY_INTERVAL = 1 << 16
MAX_NONCE = 2 ** 64 - 1

REC_DATA, REC_HEARTBEAT, REC_CLOSE, REC_HELLO, REC_ADMIT = 1, 2, 3, 4, 5
REC_GOSSIP = 7  # contact gossip (PROTOCOL.md section 13): read and ignored here
ROLE_NODE, ROLE_CLIENT = 0, 1
FLAG_BOOTSTRAP = 1
FLAG_FIRST, FLAG_LAST, FLAG_SIGNED = 1, 2, 4
FRAGMENT_HEADER = 3
RECORD_PREFIX = 2  # u16be length before each record in a frame body
PRIORITY_COUNT = 3
MAX_CLOSE_TEXT = 256
CLOSE_NORMAL = 0


class PeerError(Exception):
    """A protocol or verification failure: ERROR line, exit 1."""


class Timeout(Exception):
    """The overall --timeout ran out: exit 3."""


class PeerClosed(Exception):
    """The connection reached EOF."""


def log(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def make_prologue(network):
    name = network.encode("utf-8")[:MAX_NETWORK_NAME]
    return b"CRUST" + struct.pack(">HB", PROTOCOL_VERSION, len(name)) + name


def expected_payload(k, size):
    """Payload byte i of message k is (i*7 + k) % 251."""
    period = bytes((i * 7 + k) % 251 for i in range(251))
    reps = size // 251 + 1
    return (period * reps)[:size]


# --- identity ------------------------------------------------------------------

class Identity:
    def __init__(self, ed25519_seed, x25519_private):
        self.sign_key = Ed25519PrivateKey.from_private_bytes(ed25519_seed)
        self.id = self.sign_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.dh = X25519DH()
        self.static = self.dh.generate_keypair(X25519PrivateKey(x25519_private))
        self.static_pub = self.static.public.data

    def peer_key_hex(self):
        return (self.id + self.static_pub).hex()

    def proof(self, h):
        msg = PROOF_DOMAIN + h + self.static_pub
        return self.id + self.sign_key.sign(msg)


def check_proof(payload, h, remote_static, expected_id=None):
    """Verifies an identity proof; returns the remote's Ed25519 id."""
    if len(payload) != PROOF_SIZE or remote_static is None:
        raise PeerError("handshake failed: identity proof has %d bytes, want %d"
                        % (len(payload), PROOF_SIZE))
    remote_id, sig = payload[:32], payload[32:]
    msg = PROOF_DOMAIN + h + remote_static
    try:
        Ed25519PublicKey.from_public_bytes(remote_id).verify(sig, msg)
    except (InvalidSignature, ValueError):
        raise PeerError("bad signature: the remote's identity proof does not verify")
    if expected_id is not None and remote_id != expected_id:
        raise PeerError("wrong peer key: remote id %s, expected %s"
                        % (remote_id.hex(), expected_id.hex()))
    return remote_id


# --- Noise via dissononce ----------------------------------------------------------

class ProofSymmetricState(SymmetricState):
    """dissononce's SymmetricState, plus access to h just before the payload.

    dissononce's HandshakeState.write_message processes the tokens and then
    calls encrypt_and_hash(payload) last, passing the payload through
    untouched; read_message likewise calls decrypt_and_hash(payload) last.
    So:
      * writing: the payload may be a callable; it is called with h (the
        handshake hash at that moment, i.e. just before the payload is
        encrypted) and must return the payload bytes;
      * reading: h_before_last is h just before the last decrypt_and_hash,
        i.e. just before the payload was decrypted.
    All hashing, key mixing and encryption stay dissononce's own.
    """

    def __init__(self, cipherstate, hashfn):
        super().__init__(cipherstate, hashfn)
        self.h_before_last = None

    def encrypt_and_hash(self, plaintext):
        self.h_before_last = self.get_handshake_hash()
        if callable(plaintext):
            plaintext = plaintext(self.h_before_last)
        return super().encrypt_and_hash(plaintext)

    def decrypt_and_hash(self, ciphertext):
        self.h_before_last = self.get_handshake_hash()
        return super().decrypt_and_hash(ciphertext)


def new_handshake(me, pattern, initiator, prologue, rs=None):
    ss = ProofSymmetricState(CipherState(ChaChaPolyCipher()), SHA256Hash())
    hs = HandshakeState(ss, X25519DH())
    hs.initialize(pattern, initiator, prologue, s=me.static,
                  rs=X25519PublicKey(rs) if rs is not None else None)
    return hs, ss


def hs_write(hs, payload):
    buf = bytearray()
    cipherstates = hs.write_message(payload, buf)
    return bytes(buf), cipherstates


def hs_read(hs, message):
    """Returns (payload, cipherstates or None); PeerError if it fails."""
    buf = bytearray()
    try:
        cipherstates = hs.read_message(bytes(message), buf)
    except DecryptFailedException:
        raise PeerError("handshake failed: message does not authenticate")
    except (ValueError, AssertionError) as exc:  # e.g. a low-order point
        raise PeerError("handshake failed: %s" % (exc or type(exc).__name__))
    return bytes(buf), cipherstates


# --- I/O -------------------------------------------------------------------------------

class Conn:
    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise PeerClosed()
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, data):
        self.sock.sendall(data)


class FrameSealer:
    def __init__(self, cs):
        self.cs = cs
        self.since_rekey = 0

    def seal(self, body):
        if len(body) > MAX_FRAME_BODY:
            raise PeerError("internal: frame body of %d bytes" % len(body))
        header = self.cs.encrypt_with_ad(b"", struct.pack(">H", len(body)))
        sealed = self.cs.encrypt_with_ad(b"", bytes(body))
        self.since_rekey += 1
        if self.since_rekey == REKEY_INTERVAL:
            rekey(self.cs)
            self.since_rekey = 0
        return header + sealed


class FrameOpener:
    def __init__(self, conn, cs):
        self.conn = conn
        self.cs = cs
        self.since_rekey = 0

    def _open(self, ciphertext, what):
        try:
            return self.cs.decrypt_with_ad(b"", ciphertext)
        except DecryptFailedException:
            raise PeerError("frame corrupt: %s does not authenticate" % what)

    def next_body(self):
        header = self._open(self.conn.read_exact(FRAME_HEADER), "frame header")
        (length,) = struct.unpack(">H", header)
        if length > MAX_FRAME_BODY:
            raise PeerError("frame corrupt: body length %d > %d" % (length, MAX_FRAME_BODY))
        body = self._open(self.conn.read_exact(length + TAG), "frame body")
        self.since_rekey += 1
        if self.since_rekey == REKEY_INTERVAL:
            rekey(self.cs)
            self.since_rekey = 0
        return body


def rekey(cs):
    """Noise REKEY for a transport CipherState, then nonce back to zero.

    Tests send far fewer than 65536 frames per direction, so this never runs in
    practice; it is here for completeness. dissononce's Cipher.rekey returns
    the whole 48-byte ENCRYPT output instead of the first 32 bytes (Noise
    spec 4.2), so the result is truncated here; the cipher call itself is
    dissononce's. initialize_key also sets the nonce to zero, as Crust does.
    """
    new_key = cs.cipher.rekey(cs._key)[:32]
    cs.initialize_key(new_key)


# --- records -------------------------------------------------------------------------------

def encode_message(payload, prio):
    """Yields the records of one data message (Crust's encode_message). Each
    record fits a frame body of its own with its 2-byte length prefix."""
    offset = 0
    first = True
    while True:
        header_size = FRAGMENT_HEADER + 4 if first else FRAGMENT_HEADER
        take = min(MAX_FRAME_BODY - RECORD_PREFIX - header_size, len(payload) - offset)
        last = offset + take == len(payload)
        flags = (FLAG_FIRST if first else 0) | (FLAG_LAST if last else 0)
        header = bytes([REC_DATA, flags, prio])
        if first:
            header += struct.pack(">I", len(payload))
        yield header + payload[offset:offset + take]
        offset += take
        first = False
        if offset >= len(payload):
            break


def encode_close(reason, text=b""):
    return bytes([REC_CLOSE, reason]) + text[:MAX_CLOSE_TEXT]


class Reassembler:
    """Feeds frame bodies; returns ('data', payload, prio), ('close', reason,
    text), ('hello', role, bootstrap), ('admit',), or None (a heartbeat, or a
    message still incomplete)."""

    def __init__(self):
        self.in_message = False
        self.expected = 0
        self.prio = 0
        self.signed = False
        self.payload = bytearray()

    def feed_body(self, body):
        """Splits a frame body into its length-prefixed records; returns the
        events they complete, in order."""
        if not body:
            raise PeerError("protocol violation: empty frame body")
        events = []
        at = 0
        while at < len(body):
            if len(body) - at < RECORD_PREFIX:
                raise PeerError("protocol violation: truncated record length")
            (n,) = struct.unpack(">H", body[at:at + RECORD_PREFIX])
            at += RECORD_PREFIX
            if n == 0 or len(body) - at < n:
                raise PeerError("protocol violation: record of %d bytes in %d" % (n, len(body) - at))
            ev = self.feed(body[at:at + n])
            at += n
            if ev is not None:
                events.append(ev)
        return events

    def feed(self, body):
        if not body:
            raise PeerError("protocol violation: empty record")
        kind = body[0]
        if kind == REC_HEARTBEAT:
            if len(body) != 1:
                raise PeerError("protocol violation: heartbeat record of %d bytes" % len(body))
            return None
        if kind == REC_CLOSE:
            if len(body) < 2 or len(body) > 2 + MAX_CLOSE_TEXT:
                raise PeerError("protocol violation: close record of %d bytes" % len(body))
            return ("close", body[1], body[2:].decode("utf-8", "replace"))
        if kind == REC_HELLO:
            # The TCP listening port (u16) and then the UDP port (u16) that
            # follow are optional.
            if len(body) not in (3, 5, 7) or body[1] > ROLE_CLIENT or body[2] & ~FLAG_BOOTSTRAP:
                raise PeerError("protocol violation: hello record %s" % body.hex())
            return ("hello", body[1], bool(body[2] & FLAG_BOOTSTRAP))
        if kind == REC_ADMIT:
            # The acceptor's UDP port (u16) that follows is optional.
            if len(body) not in (1, 3):
                raise PeerError("protocol violation: admit record of %d bytes" % len(body))
            return ("admit",)
        if kind == REC_GOSSIP:
            # A Crust node pushes its contact record to every node peer;
            # this peer takes no part in gossip (answering is not required).
            if len(body) < 2:
                raise PeerError("protocol violation: empty gossip record")
            return None
        if kind != REC_DATA:
            raise PeerError("protocol violation: unknown record type %d" % kind)
        if len(body) < FRAGMENT_HEADER:
            raise PeerError("protocol violation: short data record")
        flags, prio = body[1], body[2]
        if flags & ~(FLAG_FIRST | FLAG_LAST | FLAG_SIGNED) or prio >= PRIORITY_COUNT:
            raise PeerError("protocol violation: flags %#x priority %d" % (flags, prio))
        first, last, signed = bool(flags & FLAG_FIRST), bool(flags & FLAG_LAST), bool(flags & FLAG_SIGNED)
        data = body[FRAGMENT_HEADER:]
        if first:
            if self.in_message:
                raise PeerError("protocol violation: first fragment inside a message")
            extra = 4 + (64 if signed else 0)
            if len(data) < extra:
                raise PeerError("protocol violation: short first fragment")
            (self.expected,) = struct.unpack(">I", data[:4])
            # A signature (flag 4) is accepted and ignored: this peer only echoes.
            data = data[extra:]
            self.in_message = True
            self.prio = prio
            self.signed = signed
            self.payload = bytearray()
        elif not self.in_message or prio != self.prio or signed != self.signed:
            raise PeerError("protocol violation: fragment out of place")
        self.payload += data
        if len(self.payload) > self.expected:
            raise PeerError("protocol violation: message longer than its declared %d bytes"
                            % self.expected)
        if not last:
            return None
        self.in_message = False
        if len(self.payload) != self.expected:
            raise PeerError("protocol violation: message of %d bytes declared %d"
                            % (len(self.payload), self.expected))
        return ("data", bytes(self.payload), self.prio)


class Session:
    def __init__(self, conn, send_cs, recv_cs):
        self.conn = conn
        self.sealer = FrameSealer(send_cs)
        self.opener = FrameOpener(conn, recv_cs)
        self.reasm = Reassembler()
        self.pending = []

    def send_message(self, payload, prio):
        # One record per frame: valid, if less compact than Crust's packing.
        out = bytearray()
        for rec in encode_message(payload, prio):
            out += self.sealer.seal(struct.pack(">H", len(rec)) + rec)
        self.conn.send(bytes(out))

    def send_record(self, rec):
        self.conn.send(self.sealer.seal(struct.pack(">H", len(rec)) + rec))

    def send_close(self, reason=CLOSE_NORMAL):
        self.send_record(encode_close(reason))

    def next_event(self):
        """Next data message or close record; heartbeats are skipped."""
        while not self.pending:
            self.pending.extend(self.reasm.feed_body(self.opener.next_body()))
        return self.pending.pop(0)


# --- the two roles ------------------------------------------------------------------------------

def initiator_handshake(conn, me, network, remote_key):
    prologue = make_prologue(network)
    if remote_key is not None:
        expected_id, expected_static = remote_key[:32], remote_key[32:]
        hs, ss = new_handshake(me, XKHandshakePattern(), True, prologue, rs=expected_static)
        m1, _ = hs_write(hs, b"")
        second = XK_SECOND_SIZE
    else:
        expected_id = None
        hs, ss = new_handshake(me, XXHandshakePattern(), True, prologue)
        m1, _ = hs_write(hs, os.urandom(XX_PADDING))
        second = XX_SECOND_SIZE
    assert len(m1) == FIRST_MESSAGE_SIZE
    conn.send(m1)
    try:
        m2 = conn.read_exact(second)
    except PeerClosed:
        raise PeerError("handshake rejected: the responder closed the connection")
    payload, _ = hs_read(hs, m2)
    remote_id = check_proof(payload, ss.h_before_last, hs.rs.data, expected_id)
    m3, cipherstates = hs_write(hs, me.proof)
    assert len(m3) == THIRD_SIZE and cipherstates is not None
    conn.send(m3)
    c1, c2 = cipherstates
    return remote_id, c1, c2  # the initiator sends with c1, receives with c2


def responder_handshake(conn, me, network):
    prologue = make_prologue(network)
    try:
        m1 = conn.read_exact(FIRST_MESSAGE_SIZE)
    except PeerClosed:
        raise PeerError("handshake rejected: the initiator closed the connection")
    # XK first: it authenticates the first message. Only if that fails, read
    # it as XX (whose first message is e || 16 plaintext padding bytes).
    hs, ss = new_handshake(me, XKHandshakePattern(), False, prologue)
    pattern_name = "XK"
    try:
        hs_read(hs, m1)
        second = XK_SECOND_SIZE
    except PeerError:
        hs, ss = new_handshake(me, XXHandshakePattern(), False, prologue)
        hs_read(hs, m1)
        pattern_name = "XX"
        second = XX_SECOND_SIZE
    m2, _ = hs_write(hs, me.proof)
    assert len(m2) == second, (len(m2), second)
    conn.send(m2)
    try:
        m3 = conn.read_exact(THIRD_SIZE)
    except PeerClosed:
        raise PeerError("handshake rejected: the initiator closed the connection")
    payload, cipherstates = hs_read(hs, m3)
    remote_id = check_proof(payload, ss.h_before_last, hs.rs.data)
    c1, c2 = cipherstates
    return remote_id, c2, c1, pattern_name  # the responder sends with c2, receives with c1


def run_initiator(args, me):
    remote_key = parse_hex(args.remote_key, 64, "--remote-key") if args.remote_key else None
    sizes = parse_sizes(args.sizes)
    sock = socket.create_connection((args.host, args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(sock)
    remote_id, send_cs, recv_cs = initiator_handshake(conn, me, args.network, remote_key)
    log("PEER %s" % remote_id.hex())
    log("HANDSHAKE %s" % ("XK" if remote_key is not None else "XX"))
    session = Session(conn, send_cs, recv_cs)
    # The dialler says what it is; the acceptor admits it (or closes).
    session.send_record(bytes([REC_HELLO, ROLE_NODE, 0]))
    try:
        first = session.next_event()
    except PeerClosed:
        raise PeerError("connection closed before the peer admitted us")
    if first[0] != "admit":
        raise PeerError("expected an admit record, got %r" % (first[:2],))
    log("ADMITTED")
    # One message at a time, each echo awaited before the next is sent: no
    # reliance on socket buffer sizes and no reordering by the echo's queue.
    for k, size in enumerate(sizes):
        sent = expected_payload(k, size)
        session.send_message(sent, args.priority)
        try:
            ev = session.next_event()
        except PeerClosed:
            raise PeerError("connection closed while awaiting the echo of message %d" % k)
        if ev[0] == "close":
            raise PeerError("peer closed (reason %d %r) before echoing message %d" % (ev[1], ev[2], k))
        if ev[0] != "data":
            raise PeerError("unexpected %s record while awaiting the echo of message %d" % (ev[0], k))
        _, got, prio = ev
        if got != sent:
            where = next((i for i in range(min(len(got), len(sent))) if got[i] != sent[i]),
                         min(len(got), len(sent)))
            raise PeerError("echo of message %d differs: sent %d bytes, got %d, first difference at %d"
                            % (k, len(sent), len(got), where))
        if prio != args.priority:
            raise PeerError("echo of message %d has priority %d, sent %d" % (k, prio, args.priority))
    session.send_close(CLOSE_NORMAL)
    # Wait for the peer's close record or EOF; anything else is ignored.
    try:
        while True:
            ev = session.next_event()
            if ev[0] == "close":
                break
    except PeerClosed:
        pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    sock.close()
    log("OK %d messages" % len(sizes))


def run_responder(args, me):
    listener = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((args.host, args.port))
    listener.listen(1)
    log("PORT %d" % listener.getsockname()[1])
    sock, _ = listener.accept()
    listener.close()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(sock)
    remote_id, send_cs, recv_cs, pattern_name = responder_handshake(conn, me, args.network)
    log("PEER %s" % remote_id.hex())
    log("HANDSHAKE %s" % pattern_name)
    session = Session(conn, send_cs, recv_cs)
    try:
        hello = session.next_event()
    except PeerClosed:
        raise PeerError("connection closed before the dialler's hello")
    if hello[0] != "hello":
        raise PeerError("expected the dialler's hello first, got %r" % (hello[0],))
    log("HELLO role %d bootstrap %d" % (hello[1], hello[2]))
    session.send_record(bytes([REC_ADMIT]))
    count = 0
    while True:
        try:
            ev = session.next_event()
        except PeerClosed:
            raise PeerError("connection closed after %d messages without a close record" % count)
        if ev[0] == "close":
            break
        if ev[0] != "data":
            raise PeerError("unexpected %s record after the hello" % ev[0])
        _, payload, prio = ev
        session.send_message(payload, prio)
        count += 1
    try:
        session.send_close(CLOSE_NORMAL)
    except ConnectionError:
        # The dialler may close right after its close record; the exchange
        # is complete either way.
        pass
    # Let the dialler read our close before the socket goes away: half-close,
    # then wait (briefly) for its EOF, so unread bytes never turn into a RST.
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(2.0)
        while sock.recv(65536):
            pass
    except OSError:
        pass
    sock.close()
    log("OK %d messages" % count)


# --- command line ---------------------------------------------------------------------------------------

def parse_hex(text, length, what):
    try:
        b = bytes.fromhex(text)
    except ValueError:
        raise PeerError("%s is not hex" % what)
    if len(b) != length:
        raise PeerError("%s must be %d bytes (%d hex digits), got %d bytes"
                        % (what, length, 2 * length, len(b)))
    return b


def parse_sizes(text):
    try:
        sizes = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise PeerError("--sizes must be comma-separated integers: %r" % text)
    if any(s < 0 or s > 0xFFFFFFFF for s in sizes):
        raise PeerError("--sizes out of range: %r" % text)
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser(description="Crust interop peer (dissononce)")
    ap.add_argument("--role", choices=("initiator", "responder"))
    ap.add_argument("--print-key", action="store_true",
                    help="print the 128-hex peer key of the given keys and exit")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--network", default="crust")
    ap.add_argument("--x25519-private", help="32 bytes hex (random when absent)")
    ap.add_argument("--ed25519-seed", help="32 bytes hex (random when absent)")
    ap.add_argument("--remote-key", help="initiator: 128 hex = responder's Ed25519 id || X25519 "
                                         "static key (XK); XX when absent")
    ap.add_argument("--sizes", default="0,1,100,70000,200000",
                    help="initiator: payload sizes of the messages to send")
    ap.add_argument("--priority", type=int, default=1, choices=(0, 1, 2),
                    help="initiator: priority of the messages it sends (default 1, normal)")
    ap.add_argument("--timeout", type=float, default=20.0, help="overall, seconds (exit 3)")
    args = ap.parse_args(argv)
    if not args.print_key and args.role is None:
        ap.error("one of --role or --print-key is required")

    def on_alarm(signum, frame):
        raise Timeout()

    if args.timeout > 0:
        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, args.timeout)

    try:
        if args.print_key and (args.x25519_private is None or args.ed25519_seed is None):
            raise PeerError("--print-key needs --x25519-private and --ed25519-seed")
        xpriv = parse_hex(args.x25519_private, 32, "--x25519-private") \
            if args.x25519_private else os.urandom(32)
        seed = parse_hex(args.ed25519_seed, 32, "--ed25519-seed") \
            if args.ed25519_seed else os.urandom(32)
        me = Identity(seed, xpriv)
        if args.print_key:
            log(me.peer_key_hex())
            return 0
        if args.role == "initiator":
            run_initiator(args, me)
        else:
            run_responder(args, me)
        return 0
    except Timeout:
        sys.stderr.write("ERROR timeout after %g seconds\n" % args.timeout)
        sys.stderr.flush()
        return 3
    except PeerError as exc:
        sys.stderr.write("ERROR %s\n" % exc)
        sys.stderr.flush()
        return 1
    except PeerClosed:
        sys.stderr.write("ERROR connection closed unexpectedly\n")
        sys.stderr.flush()
        return 1
    except OSError as exc:
        sys.stderr.write("ERROR %s\n" % exc)
        sys.stderr.flush()
        return 1
    finally:
        if args.timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)


if __name__ == "__main__":
    sys.exit(main())
