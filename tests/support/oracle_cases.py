"""The differential cases: option files and messages given to both milters.

Each case names the README "What changes, deliberately" row that explains it when the two
milters are expected to differ (``documented``); every other case must be identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from tests.support.oracle_harness import Message, local_rcpt, remote_rcpt
from tools.stack import GTUBE

# The option file every set starts from: what the tests need, nothing more.
BASE = """\
# shared by milter-spamc and spambridge
spamd-socket=@SPAMD@
access-db=
"""


def options(*lines: str) -> str:
    return BASE + "".join(line + "\n" for line in lines)


def headers(
    *extra: tuple[bytes, bytes], subject: bytes | None = b" Budget notes"
) -> list[tuple[bytes, bytes]]:
    out = [
        (b"From", b" Alice <alice@example.org>"),
        (b"To", b" Bob <bob@example.com>"),
        (b"Date", b" Fri, 04 Dec 2026 10:00:00 +0000"),
        (b"Message-ID", b" <case-1@example.org>"),
    ]
    if subject is not None:
        out.append((b"Subject", subject))
    out.extend(extra)
    return out


HAM_BODY = (
    b"Hello Bob,\r\n\r\nthe budget notes for next week are attached below. Please read them\r\n"
    b"before the meeting on Tuesday and send me your questions.\r\n\r\nThanks,\r\nAlice\r\n"
)
SPAM_BODY = b"This is the GTUBE test message.\r\n\r\n" + GTUBE + b"\r\n"

HAM = Message(headers(), HAM_BODY)
SPAM = Message(headers(subject=b" Buy now"), SPAM_BODY)


@dataclass(frozen=True)
class Case:
    name: str
    options: str
    message: Message
    documented: str | None = None  # README row explaining an expected difference
    tags: Sequence[str] = field(default_factory=tuple)


ORACLE_HELP = "@HELP@"  # replaced by milter-spamc's own +help output (see conftest)

# Sendmail passes a folded value with a bare LF before the continuation.
_FOLDED_SUBJECT = b" " + b" ".join([b"word%d" % i for i in range(40)])[:200] + b"\n\tcontinued"
FORGED = (
    (b"X-Spam-Flag", b" YES"),
    (b"X-Spam-Status", b" YES, hits=99.00 required=5.00"),
    (b"X-Spam-Level", b" xxxxxxxx"),
    (b"X-Spam-Report", b" forged"),
    (b"X-Spam-Flag", b" YES"),
)
BIG_BODY = b"".join(
    b"line %05d of a long but ordinary message about the budget\r\n" % i for i in range(2500)
)
ACCESS = "@ACCESS@"

LOCAL_ONE = (local_rcpt("nobody"),)
LOCAL_TWO = (local_rcpt("nobody"), local_rcpt("daemon"))
MIXED = (local_rcpt("nobody"), remote_rcpt("carol@example.net"))
CYRUS = (
    (
        b"<nobody@mbox.example.test>",
        {"{rcpt_mailer}": "cyrusv2", "{rcpt_host}": "mbox", "{rcpt_addr}": "nobody"},
    ),
)
# A gateway: the mailertable routes the domain to a private address literal.
GATEWAY = (
    (
        b"<nobody@gw.example>",
        {"{rcpt_mailer}": "esmtp", "{rcpt_host}": "[10.1.2.3]", "{rcpt_addr}": "nobody@gw.example"},
    ),
)
LITERAL = ((b"<nobody@[10.1.2.3]>", {"{rcpt_mailer}": "esmtp", "{rcpt_host}": "[10.1.2.3]"}),)
LONG_SUBJECT = b" " + b"x" * 600
AUTH = {"{auth_authen}": "alice", "{auth_type}": "PLAIN"}


def spam(**kw: object) -> Message:
    fields = {"headers": headers(subject=b" Buy now"), "body": SPAM_BODY, **kw}
    return Message(**fields)  # type: ignore[arg-type]


def ham(**kw: object) -> Message:
    fields = {"headers": headers(), "body": HAM_BODY, **kw}
    return Message(**fields)  # type: ignore[arg-type]


CASES: tuple[Case, ...] = (
    Case("ham", options(), HAM),
    Case("spam", options(), SPAM),
    Case("spam-no-subject", options(), spam(headers=headers(subject=None))),
    Case("spam-already-tagged", options(), spam(headers=headers(subject=b" [spam] Buy now"))),
    Case("spam-8bit-subject", options(), spam(headers=headers(subject=b" Caf\xe9 menu"))),
    Case("spam-long-folded-subject", options(), spam(headers=headers(subject=_FOLDED_SUBJECT))),
    Case("ham-forged-headers", options(), ham(headers=headers(*FORGED))),
    Case("spam-forged-headers", options(), spam(headers=headers(*FORGED, subject=b" Buy"))),
    Case("spam-empty-body", options(), spam(body=b"")),
    Case("ham-local-rcpt-user", options(), ham(rcpts=LOCAL_ONE)),
    Case("ham-two-local-rcpts", options("spamd-user=fallback"), ham(rcpts=LOCAL_TWO)),
    Case("ham-mixed-rcpts", options(), ham(rcpts=MIXED)),
    Case("ham-cyrus-rcpt", options(), ham(rcpts=CYRUS)),
    Case(
        "ham-no-user-config",
        options("-no-user-config +no-user-config spamd-user=sa"),
        ham(rcpts=LOCAL_ONE),
    ),
    # libsnert's address parser refuses an address literal (README: address syntax checks)
    Case("rcpt-address-literal", options(), ham(rcpts=LITERAL)),
    Case("ham-is-gateway", options("+is-gateway"), ham(rcpts=GATEWAY)),
    Case("ham-not-gateway", options(), ham(rcpts=GATEWAY)),
    Case("spam-spamd-timeout", options("spamd-timeout=30"), SPAM),
    Case("spam-subject-over-500-bytes", options(), spam(headers=headers(subject=LONG_SUBJECT))),
    Case("spam-smtp-auth", options(), spam(mail_macros=AUTH, headers=headers(*FORGED))),
    Case("spam-smtp-auth-not-ok", options("-smtp-auth-ok"), spam(mail_macros=AUTH)),
    # several options on one line, quotes inside a token, += on a one-value option
    Case(
        "spam-tag-score-quoted-tag",
        options('subject-tag="[SPAM] #1" +subject-tag-score +always-add-flag'),
        SPAM,
    ),
    # 8-bit tag bytes: milter-spamc writes them raw into the Subject, spambridge an RFC 2047 word
    Case("spam-non-ascii-subject-tag", options("subject-tag=[SP\u00c4M]"), SPAM),
    Case("ham-always-add", options("+always-add-flag +always-add-level level-character=*"), HAM),
    Case("spam-no-level-char", options("level-character="), SPAM),
    Case("spam-reject-detailed", options("extra-reject=0"), SPAM),
    Case("spam-reject-plain", options("extra-reject=0 -smtp-detailed-reply"), SPAM),
    Case("spam-reject-high-threshold", options("extra-reject=2000"), SPAM),
    Case("spam-discard", options("extra-discard=0"), SPAM),
    Case(
        "spam-discard-low-precedence",
        options("+discard-low-precedence- extra-reject=0"),
        spam(headers=headers((b"Precedence", b" bulk"), subject=b" Buy")),
    ),
    Case("spam-command-check", options("spamd-command=CHECK"), SPAM),
    Case("ham-command-check", options("spamd-command=CHECK"), HAM),
    Case("spam-command-symbols", options("spamd-command=SYMBOLS"), SPAM),
    Case("spam-command-report-ifspam", options("spamd-command=REPORT_IFSPAM"), SPAM),
    Case("ham-command-report-ifspam", options("spamd-command=REPORT_IFSPAM"), HAM),
    Case("spam-policy-copy", options("mail-policy=copy mail-spam=spam@example.test"), SPAM),
    Case(
        "spam-policy-copy-low",
        options(
            "mail-policy=copy mail-spam=spam@example.test mail-low-spam=low@example.test",
            "extra-low-spam=2000",
        ),
        SPAM,
    ),
    Case("spam-policy-redirect", options("mail-policy=redirect mail-spam=spam@example.test"), SPAM),
    Case(
        "spam-mail-format-all-escapes",
        options(
            "mail-policy=redirect mail-spam=spam@example.test",
            'mail-format="%A|%D|%L|%P|%R|%S|%T|%%@example.test"',
        ),
        spam(rcpts=(local_rcpt("nobody+box"),)),
    ),
    Case(
        "spam-mail-format-mixed-rcpts",
        options("mail-policy=redirect mail-spam=spam@example.test mail-format=%L+spam@%D"),
        spam(rcpts=MIXED),
    ),
    Case("ham-copies", options("mail-ham=ham@example.test mail-archive=all@example.test"), HAM),
    Case("spam-copies", options("mail-ham=ham@example.test mail-archive=all@example.test"), SPAM),
    Case("big-ham-max-size-1", options("spamd-max-size=1"), ham(body=BIG_BODY)),
    Case("big-ham-max-size-64", options("spamd-max-size=64"), ham(body=BIG_BODY * 2)),
    Case("big-ham-unlimited", options("spamd-max-size=0"), ham(body=BIG_BODY)),
    Case("small-body-chunk", options(), ham(body=b"Hi Bob, see you.\r\n")),
    Case("max-untrusted", options("max-untrusted=1"), ham(rcpts=LOCAL_TWO)),
    Case("spamd-down", options("spamd-socket=127.0.0.1,9"), SPAM),
    Case("plus-help-option-file", ORACLE_HELP + BASE, SPAM),
    Case("access-connect-ok", options(ACCESS), spam(client_addr=b"192.0.2.1")),
    Case("access-connect-relay", options(ACCESS), spam(client_addr=b"192.0.2.2")),
    Case("access-from-ok", options(ACCESS), spam(sender=b"<friend@example.org>")),
    Case("access-to-friend", options(ACCESS), spam(rcpts=(remote_rcpt("pal@example.com"),))),
    Case("access-to-relay", options(ACCESS), spam(rcpts=(remote_rcpt("bob@relayed.example"),))),
    Case("access-to-hater", options(ACCESS), spam(rcpts=(remote_rcpt("foe@example.com"),))),
    Case("access-from-skip", options(ACCESS), spam(sender=b"<skip@example.org>")),
    Case("access-from-reject", options(ACCESS), spam(sender=b"<enemy@example.org>")),
    Case("access-from-error", options(ACCESS), spam(sender=b"<error@example.org>")),
    Case("access-from-discard", options(ACCESS), spam(sender=b"<discard@example.org>")),
)

# Cases whose difference is deliberate: case name -> the README row that says why.
DOCUMENTED: dict[str, str] = {
    "ham-forged-headers": "forged header removal",
    "spam-forged-headers": "forged header removal",
    "spam-smtp-auth": "SMTP AUTH senders",
    "spam-smtp-auth-not-ok": "synthetic Received header",
    "spam-tag-score-quoted-tag": "scores of 1000 and more",
    "spam-reject-detailed": "scores of 1000 and more",
    "small-body-chunk": "body chunks under 20 bytes",
    "spam-policy-copy-low": "mail-low-spam",
    "spam-discard-low-precedence": "Precedence header",
    "spam-no-subject": "missing Subject",
    "rcpt-address-literal": "address syntax checks",
    "ham-is-gateway": "is-gateway",
    "spam-subject-over-500-bytes": "long Subject",
    "access-connect-ok": "Connect: white-list",
    "access-from-ok": "white-listed sender",
    "spam-long-folded-subject": "folded headers to spamd",
    "spam-non-ascii-subject-tag": "non-ASCII subject-tag",
}
CASES = tuple(Case(c.name, c.options, c.message, DOCUMENTED.get(c.name), c.tags) for c in CASES)
