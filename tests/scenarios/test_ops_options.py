"""The option file and the command line as an operator meets them: milter-spamc syntax,
precedence, every error exits 2 naming the option, +help round-trips, `check` output, and an
unmodified milter-spamc.cf."""

from __future__ import annotations

from pathlib import Path

import pytest

from spambridge import cli
from spambridge.options import OPTIONS, option_file_text

# A milter-spamc.cf as an existing install has it: the options of milter-spamc 1.17 and the
# libsnert options they share, in milter-spamc's syntax (the access map path is set per test).
MILTER_SPAMC_CF = """\
# milter-spamc/1.17.1 option file
milter-socket=unix:/var/run/milter/milter-spamc.socket
milter-timeout=7210
milter-queue=20
daemon=+
pid-file=/var/run/milter/milter-spamc.pid
run-user=milter
run-group=milter
work-dir=/var/tmp
verbose=info
+smtp-auth-ok
+rfc2821-syntax
-rfc2821-local-length
-rfc2821-domain-length
-rfc2821-literal-plus
+reject-percent-relay
+reject-rfc2606
+reject-unknown-tld
sendmail-cf=/etc/mail/sendmail.cf
interface-ip=
interface-name=

spamd-socket=127.0.0.1,783
spamd-timeout=120
spamd-max-size=64
spamd-command=REPORT
spamd-user=
-no-user-config
-is-gateway
subject-tag=[SPAM]
-subject-tag-score
extra-reject=-1
extra-discard=-1
-discard-low-precedence-
extra-low-spam=-1
mail-policy=none
mail-spam=
mail-low-spam=
mail-format=
mail-ham=
mail-archive=
max-untrusted=-1
-always-add-flag
-always-add-level
level-character=x
+smtp-detailed-reply
"""


def check(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main([*argv, "check"])
    out = capsys.readouterr()
    return code, out.out, out.err


def effective(text: str) -> dict[str, str]:
    """`check` output -> {option: value} (booleans as + or -)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "=" in line:
            name, _, value = line.partition("=")
            out[name] = value
        else:
            out[line[1:]] = line[0]
    return out


def test_options_file_read_and_command_line_applies_on_top(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cf = tmp_path / "spambridge.cf"
    cf.write_text(
        "# comment line\n"
        "extra-reject=4   # trailing comment\n"
        "subject-tag='[JUNK]'\n"
        "+always-add-flag -smtp-detailed-reply\n"
        "spamd-socket=127.0.0.1,783\n"
        "spamd-socket+=/run/spamd.sock\n"
        "reject-reply=554 5.7.1 no spam here\n"
    )
    code, out, err = check([f"file={cf}", "extra-reject=6", "-always-add-flag"], capsys)
    assert code == 0, err
    conf = effective(out)
    assert conf["extra-reject"] == "6"  # command line wins
    assert conf["always-add-flag"] == "-"
    assert conf["subject-tag"] == "[JUNK]"
    assert conf["smtp-detailed-reply"] == "-"
    assert conf["spamd-socket"] == "127.0.0.1,783 /run/spamd.sock"
    assert conf["reject-reply"] == "554 5.7.1 no spam here"


def test_options_gnu_form_and_case_insensitive_names(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(
        [
            "file=",
            "--extra-reject",
            "2",
            "--Subject-Tag=[X]",
            "--no-smtp-auth-ok",
            "EXTRA-DISCARD=9",
        ],
        capsys,
    )
    assert code == 0, err
    conf = effective(out)
    assert (conf["extra-reject"], conf["subject-tag"], conf["smtp-auth-ok"]) == ("2", "[X]", "-")
    assert conf["extra-discard"] == "9"


def test_options_file_empty_reads_no_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = check(["file="], capsys)
    assert code == 0
    assert effective(out)["extra-reject"] == "-1"


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["bogus=1"], "bogus"),
        (["+spamd-socket"], "spamd-socket"),
        (["milter-queue=abc"], "milter-queue"),
        (["spamd-command=FOO"], "spamd-command"),
        (["socket-mode=999"], "socket-mode"),
        (["trusted-networks=10.0.0.300"], "trusted-networks"),
        (["verbose=loud"], "verbose"),
        (["reject-reply=250 ok"], "reject-reply"),
        (["spamd-tempfail-reply=550 5.7.1 no"], "spamd-tempfail-reply"),
        (["mail-policy=copy"], "mail-spam"),
        (["spamd-command=HEADERS"], "header-style"),
        (["header-style=spamassassin"], "spamd-command"),
        (["file=/nonexistent/spambridge.cf"], "file"),
        (["extra-reject+=1"], "extra-reject"),
        (["milter-socket=tcp:1"], "milter-socket"),
        (["milter-socket=unix:relative.sock"], "milter-socket"),
        (["level-character=ab"], "level-character"),
        (["access-db=text!/nonexistent/access"], "access-db"),
        (["spamd-timeouts=Q:1"], "spamd-timeouts"),
        (["milter-timeout=soon"], "milter-timeout"),
        (["max-connections=0"], "max-connections"),
        (["smtp-auth-ok=maybe"], "smtp-auth-ok"),
        (["extra-reject=lots"], "extra-reject"),
        (["oversize-action=drop"], "oversize-action"),
    ],
)
def test_options_error_exits_2_naming_the_option(
    args: list[str], option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(["file=", *args], capsys)
    assert code == 2
    assert err.startswith(f"spambridge: error: {option}: "), err
    assert out == ""


def test_options_gnu_option_without_value_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["file=", "--spamd-user"]) == 2
    assert capsys.readouterr().err.startswith("spambridge: error: --spamd-user: needs a value")


@pytest.mark.parametrize(
    ("line", "option"),
    [
        ("bogus=1", "bogus"),
        ("extra-reject=high", "extra-reject"),
        ("just-a-word", "just-a-word"),
        ("+subject-tag", "subject-tag"),
    ],
)
def test_options_file_error_names_option_file_and_line(
    tmp_path: Path, line: str, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cf = tmp_path / "bad.cf"
    cf.write_text(f"# ok\nextra-discard=5\n{line}\n")
    code, _, err = check([f"file={cf}"], capsys)
    assert code == 2
    assert err.startswith(f"spambridge: error: {option}: "), err
    if option not in ("extra-reject",):
        assert f"{cf}:3" in err


def test_options_plus_help_parses_back_to_the_same_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["+help"]) == 0
    text = capsys.readouterr().out
    assert text == option_file_text()
    for opt in OPTIONS:
        assert f"{opt.name}=" in text or f"+{opt.name}" in text or f"-{opt.name}" in text
    cf = tmp_path / "from-help.cf"
    cf.write_text(text)
    code, out, err = check([f"file={cf}"], capsys)
    assert code == 0, err
    defaults = effective(check(["file="], capsys)[1])
    assert effective(out) | {"file": ""} == defaults


def test_options_check_output_is_itself_a_valid_option_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = check(
        ["file=", "extra-reject=2.5", "trusted-networks=10.0.0.0/8 ::1/128"], capsys
    )
    assert code == 0
    cf = tmp_path / "check.cf"
    cf.write_text(out)
    code2, out2, err2 = check([f"file={cf}"], capsys)
    assert code2 == 0, err2
    assert effective(out2) | {"file": ""} == effective(out)
    assert effective(out2)["trusted-networks"] == "10.0.0.0/8 ::1/128"


def test_options_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"--{opt.name}" in text for opt in OPTIONS)


def test_options_unmodified_milter_spamc_cf_is_accepted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    access = tmp_path / "access"
    access.write_text("Connect:127.0.0.1 OK\n")
    cf = tmp_path / "milter-spamc.cf"
    cf.write_text(MILTER_SPAMC_CF + f"access-db=text!{access}\n")
    code, out, err = check([f"file={cf}"], capsys)
    assert code == 0, err
    conf = effective(out)
    assert conf["milter-socket"] == "unix:/var/run/milter/milter-spamc.socket"
    assert conf["spamd-socket"] == "127.0.0.1,783"
    assert conf["spamd-max-size"] == "64"
    assert conf["run-user"] == "milter"
    assert conf["daemon"] == "+"
    assert conf["discard-low-precedence"] == "-"
    # the address-syntax options are accepted with a warning, not an error
    assert "rfc2821-syntax is accepted for compatibility and ignored" in err


def test_options_milter_spamc_defaults_when_invoked_as_milter_spamc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["check"], defaults=cli.MILTER_SPAMC_DEFAULTS)
    out = capsys.readouterr().out
    assert code == 0
    conf = effective(out)
    # read when present; when absent, shown commented out with a note
    assert (
        "\nfile=/etc/mail/milter-spamc.cf\n" in out or "\n# file=/etc/mail/milter-spamc.cf\n" in out
    )
    assert conf["milter-socket"] == "unix:/var/run/milter/milter-spamc.socket"
    assert conf["pid-file"] == "/var/run/milter/milter-spamc.pid"
    code = cli.main(["check"])
    assert effective(capsys.readouterr().out)["milter-socket"] == (
        "unix:/run/spambridge/spambridge.sock"
    )


def test_options_milter_spamc_entry_point_reads_its_option_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cf = tmp_path / "milter-spamc.cf"
    cf.write_text("extra-reject=7\n")
    defaults = dict(cli.MILTER_SPAMC_DEFAULTS) | {"file": str(cf)}
    assert cli.main(["check"], defaults=defaults) == 0
    assert effective(capsys.readouterr().out)["extra-reject"] == "7"
