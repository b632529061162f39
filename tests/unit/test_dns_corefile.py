"""The Corefile as CoreDNS reads it (coredns/caddy's caddyfile): tokens, blocks, imports, errors, reload's hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.backends.bootstrap import COREFILE
from labkit.dns.coredns import DIRECTIVES, reverse_zones, split_key
from labkit.dns.corefile import CorefileError, config_hash, lex, parse

# The hashes CoreDNS logs for kubeadm's two Corefiles ("Running configuration SHA512 = ..."), seen in real logs.
KUBEADM_HASH = ("1b226df79860026c6a52e67daa10d7f0d57ec5b023288ec00c5e05f93523c894564e15b91770d3a07ae1cfbe861d15b3"
                "7d4a0027e69c546ab112970993a3b03b")
OLD_KUBEADM_HASH = ("591cf328cccc12bc490481273e738df59329c62c0b729d94e8b61db9961c2fa5f046dd37f1cf888b953814040d180f5"
                    "2594972691cd6ff41be96639138a43908")


def test_reload_hash_matches_what_coredns_logs_for_kubeadms_corefiles() -> None:
    assert config_hash("/etc/coredns/Corefile", COREFILE) == KUBEADM_HASH
    old = COREFILE.replace("cache 30 {\n       disable success cluster.local\n       disable denial cluster.local\n"
                           "    }", "cache 30")
    assert config_hash("/etc/coredns/Corefile", old) == OLD_KUBEADM_HASH


def test_comments_and_white_space_do_not_change_the_hash_but_lines_do() -> None:
    commented = COREFILE.replace("    errors\n", "    errors   # log errors\n").replace("ready", "ready  ")
    assert config_hash("x", commented) == KUBEADM_HASH
    assert config_hash("x", "\n" + COREFILE) != KUBEADM_HASH  # every line number moved


def test_lexer_quotes_comments_and_lines() -> None:
    toks = lex('a "b c" d#e\n  f "g\\"h" # x y\n"i\nj" k')
    assert [(t.line, t.text) for t in toks] == [(1, "a"), (1, "b c"), (1, "d"), (2, "f"), (2, 'g"h'), (3, "i\nj"),
                                                 (4, "k")]


def test_blocks_keys_and_directive_tokens() -> None:
    blocks = parse("f", "example.org:1053, example.com {\n  log\n  forward . 1.2.3.4 {\n    force_tcp\n  }\n"
                        "  log stuff\n}\n.:53 {\n whoami\n}\n", DIRECTIVES)
    assert [b.keys for b in blocks] == [["example.org:1053", "example.com"], [".:53"]]
    assert [t.text for t in blocks[0].tokens["log"]] == ["log", "log", "stuff"]
    assert [t.text for t in blocks[0].tokens["forward"]] == ["forward", ".", "1.2.3.4", "{", "force_tcp", "}"]


def test_env_snippets_and_imports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM", "9.9.9.9")
    (tmp_path / "extra.server").write_text("extra.test {\n  whoami\n}\n")
    text = "(common) {\n  errors\n  log\n}\n.:53 {\n  import common\n  forward . {$UPSTREAM}\n}\nimport *.server\n"
    blocks = parse(str(tmp_path / "Corefile"), text, DIRECTIVES)
    assert [b.keys for b in blocks] == [[".:53"], ["extra.test"]]
    assert set(blocks[0].tokens) == {"errors", "log", "forward"}
    assert [t.text for t in blocks[0].tokens["forward"]] == ["forward", ".", "9.9.9.9"]
    assert blocks[1].tokens["whoami"][0].file == str(tmp_path / "extra.server")


@pytest.mark.parametrize(("text", "message"), [
    (".:53 {\n  errors\n  foo\n}\n", "Corefile:3 - Error during parsing: Unknown directive 'foo'"),
    (".:53 {\n  errors }\n}\n", "Corefile:2 - Error during parsing: Unexpected '}' because no matching opening brace"),
    (".:53 {\n  forward . 1.1.1.1 {\n", "Corefile:2 - Error during parsing: Unexpected EOF"),
    (".:53 {\n  import missing.conf\n}\n", "Corefile:2 - Error during parsing: File to import not found: missing.conf"),
])
def test_errors_read_as_coredns_prints_them(text: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(CorefileError) as exc:
        parse(str(tmp_path / "Corefile"), text, DIRECTIVES)
    assert str(exc.value) == f"{tmp_path}/{message}"


def test_server_block_keys() -> None:
    assert split_key(".:53") == ("dns", ["."], 53)
    assert split_key("Example.ORG") == ("dns", ["example.org."], None)
    assert split_key("dns://cluster.local:1053") == ("dns", ["cluster.local."], 1053)
    assert split_key("10.0.0.0/8") == ("dns", ["10.in-addr.arpa."], None)
    assert reverse_zones("10.96.0.0/12") == [f"{n}.10.in-addr.arpa." for n in range(96, 112)]
    with pytest.raises(CorefileError, match="plain DNS"):
        split_key("tls://.:853")
