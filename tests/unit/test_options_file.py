"""The option file is read as libsnert's optionFile() reads it (milter-spamc's own files).

Expected values come from libsnert: the TokenSplit() test table in util/TokenSplit.c, the
option forms in util/option.c, and milter-spamc 1.17.1's own `+help` output (a snapshot in
tests/support/data, compared with the live binary by tests/oracle/test_help_snapshot.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spambridge.cli import MILTER_SPAMC_DEFAULTS, resolve
from spambridge.options import Config, split_words
from tests.support.config import make_config

HELP = Path(__file__).resolve().parents[1] / "support" / "data" / "milter-spamc-1.17.1-help.txt"


def from_file(tmp_path: Path, text: str, *argv: str) -> Config:
    cf = tmp_path / "milter-spamc.cf"
    cf.write_text(text)
    return make_config(*argv, option_file=cf)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        # libsnert TokenSplit.c's own test table, with blanks for its commas
        ("", []),
        ("a b c", ["a", "b", "c"]),
        ("a  c", ["a", "c"]),
        ("a b\\ c", ["a", "b c"]),
        ("a 'b c'", ["a", "b c"]),
        ('"a b" c', ["a b", "c"]),
        ("a 'b c'd e", ["a", "b cd", "e"]),
        ("a '' e", ["a", "", "e"]),
        ("a b''d e", ["a", "bd", "e"]),
        ("a b'd\" e' f", ["a", 'bd" e', "f"]),
        ("a b'd e", ["a", "bd e"]),
        ('name="value\'s"', ["name=value's"]),
        ("x=a\\tb", ["x=a\tb"]),
    ],
)
def test_options_file_words_split_as_libsnert(line: str, words: list[str]) -> None:
    assert split_words(line) == words


def test_options_file_several_options_on_one_line(tmp_path: Path) -> None:
    c = from_file(tmp_path, "extra-reject=3 +subject-tag-score -smtp-auth-ok spamd-user=sa\n")
    assert (c.extra_reject, c.subject_tag_score, c.smtp_auth_ok, c.spamd_user) == (
        3,
        True,
        False,
        "sa",
    )


def test_options_file_quotes_inside_a_word(tmp_path: Path) -> None:
    c = from_file(tmp_path, 'subject-tag="[SPAM] #1" +always-add-flag\n')
    assert c.subject_tag == "[SPAM] #1"
    assert c.always_add_flag is True


def test_options_file_plus_equals_on_a_one_value_option(tmp_path: Path) -> None:
    # libsnert appends ";value" to the current string of any option
    c = from_file(tmp_path, "spamd-user=a\nspamd-user+=b\nmail-ham+=h@example.test\n")
    assert c.spamd_user == "a;b"
    assert c.mail_ham == "h@example.test"  # appended to an empty default: no separator


def test_options_file_hash_word_ends_the_line(tmp_path: Path) -> None:
    c = from_file(tmp_path, "extra-reject=4 # -smtp-auth-ok\n")
    assert c.extra_reject == 4 and c.smtp_auth_ok is True


def test_options_file_unquoted_value_with_spaces_still_reads(tmp_path: Path) -> None:
    c = from_file(tmp_path, "reject-reply=554 5.7.1 no   spam here\n")
    assert c.reject_reply.source == "554 5.7.1 no   spam here"


def test_options_file_milter_spamc_plus_help_output_reads_unchanged(tmp_path: Path) -> None:
    """milter-spamc's README: the +help output "is suitable for use as an option file"."""
    text = HELP.read_text(encoding="utf-8")
    assert "discard-low-precedence-=" in text and "smdb-relay-ok" in text
    assert "tld-level-two-file=" in text
    cf = tmp_path / "help.cf"
    cf.write_text(text)
    _, resolved = resolve([f"file={cf}"])
    c = resolved.config
    assert c.discard_low_precedence is False  # the usage text is that option's value: off
    assert c.spamd_max_size == 64 and c.oversize_action == "truncate"
    assert c.daemon is True and c.run_user == "milter" and c.milter_queue == 20
    assert c.subject_tag == "[SPAM]" and c.spamd_command == "REPORT"
    assert any("smdb-debug" in w for w in resolved.warnings)
    assert c.smdb_relay_ok is False


def test_options_spamd_max_size_alone_means_milter_spamc_truncation(tmp_path: Path) -> None:
    c = from_file(tmp_path, "spamd-max-size=64\n")
    assert c.oversize_action == "truncate"
    assert c.truncate_bytes == 65535  # 64*1024 - 64/64: one libmilter body chunk
    c = from_file(tmp_path, "spamd-max-size=64\noversize-action=skip\n")
    assert c.oversize_action == "skip"
    c = from_file(tmp_path, "")
    assert (c.spamd_max_size, c.oversize_action) == (500, "skip")


def test_options_milter_spamc_name_takes_milter_spamc_defaults() -> None:
    c = make_config(defaults=MILTER_SPAMC_DEFAULTS)
    assert (c.daemon, c.run_user, c.run_group, c.work_dir) == (True, "milter", "milter", "/var/tmp")
    assert (c.spamd_max_size, c.oversize_action) == (64, "truncate")


def test_options_file_check_output_reads_back_values_with_quotes_and_hashes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from spambridge.cli import main

    argv = ['subject-tag=[SPAM] #1 "x"', "reject-reply=550 5.7.1 it's  spam", "file="]
    assert main([*argv, "check"]) == 0
    text = capsys.readouterr().out
    c = from_file(tmp_path, text)
    assert c.subject_tag == '[SPAM] #1 "x"'
    assert c.reject_reply.source == "550 5.7.1 it's  spam"


def test_options_file_weighted_spamd_entry_by_name_is_part_of_the_value(tmp_path: Path) -> None:
    """`host:port;weight=N` holds an `=`, but `host:port;weight` is no option name (option
    names are letters, digits and dashes): the word continues spamd-socket's value."""
    c = from_file(tmp_path, "spamd-socket=127.0.0.1:783 spamd2.example:783;weight=2 +dry-run\n")
    assert [(e.label, e.weight) for e in c.spamd_socket] == [
        ("127.0.0.1:783", 1),
        ("spamd2.example:783", 2),
    ]
    assert c.dry_run
