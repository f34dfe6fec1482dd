"""The label -> Caddyfile translation against caddy-docker-proxy's own test cases, and against real Caddy.

The expected Caddyfiles of the first tests are caddy-docker-proxy's test data (caddyfile/testdata and
generator/testdata in github.com/lucaslorentz/caddy-docker-proxy): same labels in, same text out.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.caddy_docker_proxy import (
    Block,
    LabelError,
    LabelledContainer,
    caddy_labels,
    caddy_tokens,
    caddyfile_from_containers,
    main,
    marshal,
)


def translate(labels: dict[str, str], *addresses: str) -> str:
    return caddyfile_from_containers([LabelledContainer(labels, addresses or ("target",))])


def test_order_prefix_orders_and_isolating_suffix_separates_directives() -> None:
    labels = {
        "caddy": "localhost",
        "caddy.1_bbb": "value",
        "caddy.2_aaa": "value",
        "caddy.3_merged.a": "value",
        "caddy.3_merged.b": "value",
        "caddy.4_isolated.a": "value",
        "caddy.5_isolated.b": "value",
    }
    assert translate(labels) == (
        "localhost {\n\tbbb value\n\taaa value\n\tmerged {\n\t\ta value\n\t\tb value\n\t}\n"
        "\tisolated {\n\t\ta value\n\t}\n\tisolated {\n\t\tb value\n\t}\n}\n"
    )


def test_escaped_dots_snippets_first_and_numbered_sites() -> None:
    labels = {
        "caddy": "(extendable-proxy)",
        "caddy.reverse_proxy.{blocks\\.proxy_target}": "",
        "caddy.reverse_proxy.{blocks\\.proxy_options}": "",
        "caddy_1": "localhost",
        "caddy_1.dynamic_dns.provider": "cloudflare token123",
        "caddy_1.dynamic_dns.domains.mydomain\\.fr": "",
    }
    assert translate(labels) == (
        "(extendable-proxy) {\n\treverse_proxy {\n\t\t{blocks.proxy_options}\n\t\t{blocks.proxy_target}\n\t}\n}\n"
        "localhost {\n\tdynamic_dns {\n\t\tdomains {\n\t\t\tmydomain.fr\n\t\t}\n"
        "\t\tprovider cloudflare token123\n\t}\n}\n"
    )


def test_upstreams_template_and_nested_directives() -> None:
    labels = {
        "caddy": "service.testdomain.com",
        "caddy.route": "/path/*",
        "caddy.route.0_uri": "strip_prefix /path",
        "caddy.route.1_reverse_proxy": "{{upstreams}}",
        "caddy.route.1_reverse_proxy.health_uri": "/health",
    }
    assert translate(labels) == (
        "service.testdomain.com {\n\troute /path/* {\n\t\turi strip_prefix /path\n"
        "\t\treverse_proxy target {\n\t\t\thealth_uri /health\n\t\t}\n\t}\n}\n"
    )
    assert translate({"caddy": "a.example.com b.example.com", "caddy.reverse_proxy": "{{upstreams}}"}) == (
        "a.example.com b.example.com {\n\treverse_proxy target\n}\n"
    )
    assert translate({"caddy": "localhost", "caddy.key": '{{""}}'}) == "localhost {\n\tkey\n}\n"


def test_upstreams_with_protocol_port_and_several_addresses() -> None:
    caddyfile = translate(
        {"caddy": "x.example.com", "caddy.reverse_proxy": "{{upstreams https 8443}}"}, "10.0.0.9", "10.0.0.10"
    )
    assert "reverse_proxy https://10.0.0.10:8443 https://10.0.0.9:8443\n" in caddyfile


def test_containers_merge_into_one_site_and_reverse_proxies_with_same_matcher_join() -> None:
    containers = [
        LabelledContainer(
            {"caddy": "example.com", "caddy.reverse_proxy": "{{upstreams 80}}"}, ("service-a",)
        ),
        LabelledContainer(
            {"caddy": "example.com", "caddy.reverse_proxy": "/path {{upstreams 81}}"}, ("service-b",)
        ),
        LabelledContainer(
            {"caddy": "example.com", "caddy.reverse_proxy": "{{upstreams 82}}"}, ("service-c",)
        ),
        LabelledContainer(
            {"caddy": "example.com", "caddy.reverse_proxy": "/path {{upstreams 83}}"}, ("service-d",)
        ),
    ]
    assert caddyfile_from_containers(containers) == (
        "example.com {\n\treverse_proxy /path service-b:81 service-d:83\n"
        "\treverse_proxy service-a:80 service-c:82\n}\n"
    )


def test_global_options_come_first_and_nothing_gives_the_empty_caddyfile() -> None:
    containers = [
        LabelledContainer({"caddy": "example.com", "caddy.respond": "ok"}, ()),
        LabelledContainer({"caddy.email": "ops@example.com"}, ()),
    ]
    assert (
        caddyfile_from_containers(containers)
        == "{\n\temail ops@example.com\n}\nexample.com {\n\trespond ok\n}\n"
    )
    assert (
        caddyfile_from_containers([LabelledContainer({"traefik.enable": "true"}, ())]) == "# Empty caddyfile"
    )


def test_only_caddy_labels_are_read() -> None:
    labels = {"caddy": "a", "caddy_2.x": "b", "caddy_ingress_network": "edge", "caddyfoo": "c", "other": "d"}
    assert caddy_labels(labels) == {"caddy": "a", "caddy_2.x": "b"}


def test_lexer_groups_quotes_and_backticks_like_caddy() -> None:
    assert caddy_tokens('X-Robots-Tag "noindex, nofollow"') == ["X-Robots-Tag", "noindex, nofollow"]
    assert caddy_tokens("X-Robots-Tag noindex, nofollow") == ["X-Robots-Tag", "noindex,", "nofollow"]
    assert caddy_tokens('user " a \\ b" `x\ny` "q\\"t" #comment\nz') == [
        "user",
        " a \\ b",
        "x\ny",
        'q"t',
        "z",
    ]
    assert caddy_tokens("a#b") == ["a#b"]


def test_tokens_are_requoted_on_output() -> None:
    caddyfile = translate(
        {"caddy": "x.example.com", "caddy.header": 'X-Tag "a, b"', "caddy.respond": '"line 1\nline 2" 200'}
    )
    assert '\theader X-Tag "a, b"\n' in caddyfile
    assert "\trespond `line 1\nline 2` 200\n" in caddyfile


def test_unsupported_template_is_an_error_naming_the_label() -> None:
    with pytest.raises(
        LabelError, match=r"web: label caddy.reverse_proxy: template .*index.* is not supported"
    ):
        caddyfile_from_containers(
            [
                LabelledContainer(
                    {"caddy": "x.example.com", "caddy.reverse_proxy": "{{index .Labels 0}}"}, (), "web"
                )
            ]
        )


def test_what_the_translation_writes_is_what_caddy_reads(tmp_path: Path) -> None:
    """Real Caddy adapts the output; the tokens it sees are the tokens the labels meant."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.fail("caddy is not installed; apt-get install caddy")
    body = "User-agent: *\nDisallow: /\n"
    labels = {
        "caddy": "http://x.example.com",
        "caddy.header": 'X-Robots-Tag "noindex, nofollow"',
        "caddy.respond": f'"{body}" 200',
    }
    path = tmp_path / "Caddyfile"
    path.write_text(translate(labels))
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
    }
    adapted = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=True,
    )
    handlers = [
        handler
        for server in json.loads(adapted.stdout)["apps"]["http"]["servers"].values()
        for route in server["routes"]
        for sub in route["handle"]
        for subroute in sub.get("routes", [])
        for handler in subroute["handle"]
    ]
    assert {"handler": "static_response", "body": body, "status_code": 200} in handlers
    assert {"handler": "headers", "response": {"set": {"X-Robots-Tag": ["noindex, nofollow"]}}} in handlers


def test_cli_prints_the_caddyfile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels_json = tmp_path / "labels.json"
    labels_json.write_text(
        json.dumps(
            [
                {
                    "labels": {"caddy": "makapix.club", "caddy.reverse_proxy": "{{upstreams 3000}}"},
                    "address": "web",
                },
                {
                    "labels": {"caddy": "makapix.club", "caddy.reverse_proxy": "{{upstreams 3000}}"},
                    "address": "web2",
                },
            ]
        )
    )
    assert main([str(labels_json)]) == 0
    assert capsys.readouterr().out == "makapix.club {\n\treverse_proxy web:3000 web2:3000\n}\n"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{", "cannot read a JSON list"),
        ('{"labels": {}}', "expected a JSON list"),
        ('[{"labels": {"caddy": "x"}}]', '[0]: "address" must be'),
        ('[{"labels": {"caddy": 1}, "address": "a"}]', '[0]: "labels" must be an object of string values'),
        ('[{"labels": {}, "address": "a", "port": 1}]', "[0]: expected"),
    ],
)
def test_cli_rejects_bad_input_naming_the_file_and_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str, message: str
) -> None:
    labels_json = tmp_path / "labels.json"
    labels_json.write_text(document)
    assert main([str(labels_json)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(labels_json) in captured.err and message in captured.err


# Tokens caddy-docker-proxy writes back faithfully. Its writer has known gaps that labels must avoid
# (and ours do): a backtick or a trailing backslash inside a quoted token, a tab (only a space makes
# it quote), a token starting with '#', and an empty token.
_SAFE_TOKENS = st.text(
    alphabet=st.sampled_from("abcXYZ019 \n,;:*/.-_@\"'{}()"), min_size=1, max_size=30
).filter(lambda token: not token.startswith("#"))


@given(st.lists(_SAFE_TOKENS, min_size=1, max_size=5))
def test_written_tokens_read_back_as_the_same_tokens(tokens: list[str]) -> None:
    """What the writer quotes, Caddy's lexer splits back into exactly the label's tokens."""
    blocks = [Block(keys=["x.example.com"], children=[Block(keys=["directive", *tokens])])]
    written = marshal(blocks)
    assert caddy_tokens(written) == ["x.example.com", "{", "directive", *tokens, "}"]


def test_cli_runs_as_a_module(tmp_path: Path) -> None:
    labels_json = tmp_path / "labels.json"
    labels_json.write_text(
        json.dumps([{"labels": {"caddy": "makapix.club", "caddy.respond": "ok"}, "address": "a"}])
    )
    completed = subprocess.run(
        [sys.executable, "-m", "tools.caddy_docker_proxy", str(labels_json)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert (completed.returncode, completed.stdout) == (0, "makapix.club {\n\trespond ok\n}\n")


# The interpreter the venv was made from: it has none of the project's packages installed.
BASE_PYTHON = getattr(sys, "_base_executable", sys.executable)


def test_the_translation_runs_alone_as_the_edge_image_runs_it(tmp_path: Path) -> None:
    """The engine tests' edge image copies this one file, without the project: standard library only."""
    source = Path(__file__).resolve().parents[2] / "tools" / "caddy_docker_proxy.py"
    alone = tmp_path / "caddy_docker_proxy.py"
    shutil.copy(source, alone)
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps([{"labels": {"caddy": "example.org", "caddy.respond": "ok"}, "address": "10.0.0.2"}])
    )
    ran = subprocess.run(
        [BASE_PYTHON, "-I", str(alone), str(labels)], cwd=tmp_path, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "example.org {" in ran.stdout
    missing = subprocess.run(
        [BASE_PYTHON, "-I", str(alone), str(tmp_path / "none.json")], capture_output=True
    )
    assert missing.returncode == 2
