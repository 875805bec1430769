from __future__ import annotations

import dataclasses
import socket
import sys
import typing
from pathlib import Path

import pytest

from spambridge.cli import MILTER_SPAMC_DEFAULTS, main, resolve
from spambridge.errors import ConfigError
from spambridge.milter_socket import SocketSpec
from spambridge.options import (
    BY_NAME,
    OPTIONS,
    Config,
    Settings,
    build_config,
    format_value,
    parse_argv,
)
from spambridge.replies import ReplySpec
from spambridge.spamd.endpoints import SpamdEndpoint
from tests.support.config import make_config


def config_of(*argv: str) -> Config:
    return make_config(*argv)


def written(endpoints: tuple[SpamdEndpoint, ...]) -> tuple[str, ...]:
    """spamd-socket's entries as the admin wrote them."""
    return tuple(e.source for e in endpoints)


def test_options_table_matches_config_fields() -> None:
    derived = {"explicit"}  # values computed from options, not options
    fields = set(Config.__dataclass_fields__) - derived
    assert {o.attr for o in OPTIONS} == fields


def test_options_config_fields_have_the_types_of_their_rows() -> None:
    """Config is checked against the table field by field, types included: each row's value
    type names the type of the field that holds its value, in the table's order."""
    hints = typing.get_type_hints(Config)
    fields = [f.name for f in dataclasses.fields(Config) if f.name != "explicit"]
    assert fields == [o.attr for o in OPTIONS]
    wrong = {o.name: (hints[o.attr], o.type.hint) for o in OPTIONS if hints[o.attr] != o.type.hint}
    assert wrong == {}


def test_options_every_default_reads_into_its_field_type_and_writes_back() -> None:
    """Each row's default, read by the row's parser, has the runtime type of its field and
    writes back as text the parser reads to an equal value (what `check` relies on)."""
    c = config_of()
    for opt in OPTIONS:
        value = getattr(c, opt.attr)
        assert opt.read(opt.write(value)) == value, opt.name


def test_options_defaults_are_milter_spamc_where_legacy() -> None:
    c = config_of()
    assert written(c.spamd_socket) == ("127.0.0.1:783",)
    assert c.extra_reject == -1
    assert c.subject_tag == "[SPAM]"
    assert c.level_character == "x"
    assert c.smtp_detailed_reply is True
    assert c.spamd_command == "REPORT"
    assert c.smtp_auth_ok is True
    assert c.milter_timeout == 7210


def test_options_both_syntaxes_give_the_same_config() -> None:
    a = config_of(
        "milter-socket=inet:9000@127.0.0.1",
        "spamd-socket=127.0.0.1:7830",
        "extra-reject=0",
        "+subject-tag-score",
    )
    b = config_of(
        "--milter-socket",
        "inet:9000@127.0.0.1",
        "--spamd-socket=127.0.0.1:7830",
        "--extra-reject",
        "0",
        "--subject-tag-score",
    )
    assert a.milter_socket.source == b.milter_socket.source == "inet:9000@127.0.0.1"
    assert written(a.spamd_socket) == written(b.spamd_socket) == ("127.0.0.1:7830",)
    assert a.extra_reject == b.extra_reject == 0
    assert a.subject_tag_score and b.subject_tag_score


def test_options_boolean_forms() -> None:
    assert config_of("-smtp-auth-ok").smtp_auth_ok is False
    assert config_of("--no-smtp-auth-ok").smtp_auth_ok is False
    assert config_of("smtp-auth-ok=no").smtp_auth_ok is False
    assert config_of("+dry-run").dry_run is True
    assert config_of("--dry-run").dry_run is True


def test_options_names_are_case_insensitive() -> None:
    assert config_of("Extra-Reject=2").extra_reject == 2


def test_options_list_append_and_repeat() -> None:
    assert written(config_of("spamd-socket+=10.0.0.2:783").spamd_socket) == (
        "127.0.0.1:783",
        "10.0.0.2:783",
    )
    assert written(config_of("--spamd-socket", "a:1", "--spamd-socket", "b:2").spamd_socket) == (
        "a:1",
        "b:2",
    )
    assert written(config_of("spamd-socket=a:1 b:2").spamd_socket) == ("a:1", "b:2")
    assert written(config_of("spamd-socket=").spamd_socket) == ()


@pytest.mark.parametrize(
    ("argv", "option", "words"),
    [
        (["nonsense=1"], "nonsense", "unknown option"),
        (["extra-reject=lots"], "extra-reject", "not a number"),
        (["spamd-command=SCAN"], "spamd-command", "CHECK, SYMBOLS, REPORT"),
        (["spamd-error-action=maybe"], "spamd-error-action", "accept, tempfail, reject"),
        (["+extra-reject"], "extra-reject", "takes a value"),
        (["trusted-networks=10.0.0.300/8"], "trusted-networks", "not a network"),
        (["verbose=loud"], "verbose", "accepted"),
        (["max-connections=0"], "max-connections", "at least 1"),
        (["milter-socket=tcp:25"], "milter-socket", "unknown socket type"),
        (["spamd-socket=host:port"], "spamd-socket", "host:port"),
        (["reject-reply=250 ok"], "reject-reply", "5xx"),
        (["spamd-tempfail-reply=550 5.7.1 no"], "spamd-tempfail-reply", "4xx"),
        (["mail-policy=copy"], "mail-spam", "mail-spam"),
        (["socket-mode=999"], "socket-mode", "octal"),
        (["level-character=xy"], "level-character", "one ASCII character"),
        (["spamd-timeouts=X:5s"], "spamd-timeouts", "spamd-timeouts"),
        (["spamd-select=fastest"], "spamd-select", "least-loaded, failover"),
        (["spamd-slow-factor=0.5"], "spamd-slow-factor", "0 (off) or above 1"),
        (["spamd-slow-samples=0"], "spamd-slow-samples", "at least 1"),
        (["spamd-socket=127.0.0.1;weight=0"], "spamd-socket", "weight"),
    ],
)
def test_options_errors_name_the_option(argv: list[str], option: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(["file=", *argv])
    assert info.value.option.lstrip("-+") == option or option in str(info.value)
    assert words in str(info.value)


def test_options_bad_option_exits_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file=", "extra-reject=x"]) == 2
    err = capsys.readouterr().err
    assert "extra-reject" in err and "not a number" in err


def test_options_option_file_then_command_line(tmp_path: Path) -> None:
    cf = tmp_path / "milter-spamc.cf"
    cf.write_text(
        "# a milter-spamc.cf\n"
        "spamd-socket=127.0.0.1,7830   # trailing comment\n"
        "extra-reject=5\n"
        "+subject-tag-score -smtp-auth-ok\n"
        "subject-tag=[** SPAM **]\n"
        'reject-reply="550 5.7.1 go away"\n'
        "\n"
    )
    c = make_config("extra-reject=3", option_file=cf)
    assert written(c.spamd_socket) == ("127.0.0.1,7830",)
    assert c.extra_reject == 3  # command line wins
    assert c.subject_tag_score is True and c.smtp_auth_ok is False
    assert c.subject_tag == "[** SPAM **]"
    assert c.reject_reply.source == "550 5.7.1 go away"


def test_options_file_error_names_file_and_line(tmp_path: Path) -> None:
    cf = tmp_path / "bad.cf"
    cf.write_text("extra-reject=1\nbogus-option=2\n")
    with pytest.raises(ConfigError) as info:
        resolve([f"file={cf}"])
    assert f"{cf}:2" in str(info.value) and "bogus-option" in str(info.value)


def test_options_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        resolve([f"file={tmp_path / 'nope.cf'}"])


def test_options_legacy_snert_options_are_accepted_with_warning() -> None:
    _, resolved = resolve(["file=", "+rfc2821-syntax", "interface-ip=192.0.2.1"])
    assert any("rfc2821-syntax" in w for w in resolved.warnings)


def test_options_spamd_timeout_sets_all_four() -> None:
    # milter-spamc's one timeout: every field, but at most 5 s per connect (failover)
    t = config_of("spamd-timeout=45").spamd_timeouts
    assert (t.connect, t.send, t.read, t.end) == (5, 45, 45, 45)
    t = config_of("spamd-timeout=3").spamd_timeouts
    assert (t.connect, t.send, t.read, t.end) == (3, 3, 3, 3)
    t = config_of("spamd-timeouts=C:2s;S:3s;R:4s;E:1m").spamd_timeouts
    assert (t.connect, t.send, t.read, t.end) == (2, 3, 4, 60)


def test_options_warns_when_end_timeout_exceeds_mta_budget() -> None:
    _, resolved = resolve(["file=", "spamd-timeouts=E:10m"])
    assert any("does not fit" in w for w in resolved.warnings)
    _, resolved = resolve(["file="])
    assert not any("does not fit" in w for w in resolved.warnings)


def test_options_milter_spamc_name_takes_its_default_paths() -> None:
    settings = Settings()
    c = build_config(settings, MILTER_SPAMC_DEFAULTS)
    assert c.milter_socket.source == "unix:/var/run/milter/milter-spamc.socket"
    assert c.file == "/etc/mail/milter-spamc.cf"


def test_options_help_lists_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for opt in OPTIONS:
        assert f"--{opt.name}" in out


def test_options_plus_help_is_option_file_form(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["+help"]) == 0
    out = capsys.readouterr().out
    settings = Settings()
    for line in out.splitlines():
        if line and not line.startswith("#"):
            parse_argv([line], settings)  # every line parses back
    assert "extra-reject=-1" in out and "+smtp-auth-ok" in out


def test_options_check_prints_effective_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file=", "check", "extra-reject=2.5", "spamd-socket=a:1 b:2"]) == 0
    out = capsys.readouterr().out
    assert "extra-reject=2.5" in out and "spamd-socket=a:1 b:2" in out


def test_options_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("spambridge ")


def test_options_symlink_named_milter_spamc_takes_its_defaults(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["/usr/local/sbin/milter-spamc", "file=", "check"])
    assert main() == 0
    assert "milter-socket=unix:/var/run/milter/milter-spamc.socket" in capsys.readouterr().out
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/spambridge", "file=", "check"])
    assert main() == 0
    assert "milter-socket=unix:/run/spambridge/spambridge.sock" in capsys.readouterr().out


def test_options_bracketed_ipv6_networks_and_whole_floats() -> None:
    c = config_of("trusted-networks=[2001:db8::]/32 [192.0.2.0]/24")
    assert [str(n) for n in c.trusted_networks] == ["2001:db8::/32", "192.0.2.0/24"]
    from spambridge.options import BY_NAME, format_value

    assert format_value(BY_NAME["extra-reject"], 3.0) == "3"
    assert format_value(BY_NAME["extra-reject"], 2.5) == "2.5"


def test_options_config_carries_typed_spamd_endpoints_and_timeouts() -> None:
    from spambridge.spamd.endpoints import SpamdEndpoint, SpamdTimeouts

    c = config_of("spamd-socket=127.0.0.1,7830 unix:/run/spamd.sock;weight=2", "spamd-timeout=45")
    assert c.spamd_socket == (
        SpamdEndpoint("127.0.0.1:7830", host="127.0.0.1", port=7830),
        SpamdEndpoint("unix:/run/spamd.sock", path="/run/spamd.sock", weight=2),
    )
    assert c.spamd_timeouts == SpamdTimeouts(5, 45, 45, 45)  # connect capped at 5 s
    # The option file `check` prints parses back to the same values.
    from spambridge.options import BY_NAME, format_value

    text = format_value(BY_NAME["spamd-timeouts"], c.spamd_timeouts)
    assert text == "C:5s;S:45s;R:45s;E:45s"
    assert config_of(f"spamd-timeouts={text}").spamd_timeouts == c.spamd_timeouts


def test_options_bad_spamd_socket_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="spamd-socket: bad entry 'host:x'"):
        config_of("spamd-socket=host:x")


def test_options_choices_and_config_types_are_one_list() -> None:
    """Each choice option's accepted values are its Config field's Literal, and the reply and
    socket options arrive parsed: nothing is parsed again per message or at start-up."""
    hints = typing.get_type_hints(Config)
    for opt in OPTIONS:
        if opt.kind == "choice":
            assert typing.get_args(hints[opt.attr]) == opt.choices, opt.name
    c = build_config(
        parse_argv(["reject-reply=451 4.7.1 later", "milter-socket=inet:25@h"]).settings
    )
    assert isinstance(c.reject_reply, ReplySpec) and c.reject_reply.source == "451 4.7.1 later"
    assert c.reject_reply == ReplySpec("451", "4.7.1", "later")
    assert isinstance(c.spamd_reject_reply, ReplySpec)
    assert c.milter_socket == SocketSpec(socket.AF_INET, host="h", port=25)


def test_options_check_prints_typed_values_as_written_and_reads_back_equal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Typed values keep the admin's text: `check` prints it unchanged (comma lists and
    spacing included), and its output reads back into an equal Config."""
    access = tmp_path / "access"
    access.write_text("Connect:192.0.2.1 OK\n")
    argv = [
        "file=",
        "milter-socket=local:/run/m.sock",
        "spamd-socket=127.0.0.1,127.0.0.2:784 ssl:h spamd2.example:783;weight=2",
        "spamd-socket+=/run/s",
        f"access-db=text!{access}",
        "tempfail-reply=451  4.7.1 later",
    ]
    assert main([*argv, "check"]) == 0
    out = capsys.readouterr().out
    assert "\nmilter-socket=local:/run/m.sock\n" in out
    assert (
        "\nspamd-socket=127.0.0.1,127.0.0.2:784 ssl:h spamd2.example:783;weight=2 /run/s\n" in out
    )
    assert f"\naccess-db=text!{access}\n" in out
    assert "\ntempfail-reply=451  4.7.1 later\n" in out
    c = config_of(*argv[1:])
    assert [e.label for e in c.spamd_socket] == [
        "127.0.0.1:783",
        "127.0.0.2:784",
        "ssl:h:783",
        "spamd2.example:783",
        "unix:/run/s",
    ]
    assert [e.weight for e in c.spamd_socket] == [1, 1, 1, 2, 1]
    cf = tmp_path / "check.cf"
    cf.write_text(out)
    again = make_config(option_file=cf)
    assert again.spamd_socket == c.spamd_socket and again.access_db == c.access_db
    assert again.milter_socket == c.milter_socket and again.tempfail_reply == c.tempfail_reply
    assert again.milter_socket.source == c.milter_socket.source


def test_options_build_config_returns_a_config_valid_as_a_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The checks across options, and of the packages an option needs, run in build_config:
    no Config it returns needs finishing."""

    def build(*argv: str) -> Config:
        return build_config(parse_argv(["file=", *argv]).settings)

    with pytest.raises(ConfigError, match="mail-spam: mail-policy=copy needs"):
        build("mail-policy=copy")
    with pytest.raises(ConfigError, match="header-style: spamd-command=HEADERS needs"):
        build("spamd-command=HEADERS")
    with pytest.raises(ConfigError, match="spamd-rewrite-body"):
        build("+spamd-rewrite-body")
    with pytest.raises(ConfigError, match="spamd-user: spamd-user-from=fixed"):
        build("spamd-user-from=fixed")
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with pytest.raises(ConfigError, match="metrics-listen: needs prometheus-client"):
        build("metrics-listen=127.0.0.1:9873")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:9873", "127.0.0.1", 9873),
        ("[::1]:9873", "::1", 9873),
        (":9873", "127.0.0.1", 9873),
    ],
)
def test_options_metrics_listen_is_parsed_once(text: str, host: str, port: int) -> None:
    pytest.importorskip("prometheus_client")
    c = config_of(f"metrics-listen={text}")
    assert c.metrics_listen is not None
    assert (c.metrics_listen.host, c.metrics_listen.port) == (host, port)
    assert format_value(BY_NAME["metrics-listen"], c.metrics_listen) == text
    assert config_of("metrics-listen=").metrics_listen is None


@pytest.mark.parametrize("text", ["foo", "127.0.0.1:99999", "127.0.0.1:", "host:x"])
def test_options_bad_metrics_listen_names_the_option(text: str) -> None:
    """Once a start-up traceback (int('foo'), or bind()'s OverflowError), after `check` said OK."""
    with pytest.raises(ConfigError, match=r"metrics-listen: .*HOST:PORT"):
        config_of(f"metrics-listen={text}")
