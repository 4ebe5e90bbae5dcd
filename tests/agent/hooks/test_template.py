"""The hook template renderer against Go's text/template: the expected texts are what Go 1.x's
text/template (option missingkey=default, with sprig-like ``dict`` and ``toJson``) printed for the same
templates over a ``v1beta1.Summary`` holding the same values, then trimmed as Stash trims them."""

from __future__ import annotations

import pytest

from stashlet.agent.hooks.data import HookData, InvokerRef, SessionStatus, TargetInfo
from stashlet.agent.hooks.gofuncs import TemplateError, sprintf, to_json
from stashlet.agent.hooks.template import render

DATA = HookData(
    name="bs-1",
    namespace="demo",
    invoker=InvokerRef("BackupConfiguration", "bc"),
    target=TargetInfo("apps/v1", "Deployment", "stash-demo"),
    status=SessionStatus("Failed", "10s", "failed <x> & y"),
)
ROOT = DATA.template_root()

SLACK = (
    (
        '\n{{- $msg := dict  "type" "mrkdwn" "text" (printf ":x: Backup failed for %s/%s Reason: %s."'
        " .Namespace .Target.Name .Status.Error) -}}\n"
    )
    + """{
  "blocks": [
      {
        "type": "section",
        "text": {{ toJson $msg }}
      }
    ]
}
"""
)


def test_stash_documented_slack_body_renders_as_go_renders_it() -> None:
    """The Slack notification of Stash's hook guide (dict, printf, toJson, a variable, trim markers)
    gives Go's exact text: JSON with sorted keys and Go's HTML escapes, the outer white space trimmed."""
    assert render(SLACK, ROOT) == (
        "{\n"
        '  "blocks": [\n'
        "      {\n"
        '        "type": "section",\n'
        '        "text": {"text":":x: Backup failed for demo/stash-demo '
        'Reason: failed \\u003cx\\u003e \\u0026 y.",'
        '"type":"mrkdwn"}\n'
        "      }\n"
        "    ]\n"
        "}"
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{{ .Status.Phase }} {{ .Status.Error }} {{ .Status.Duration }} {{ .Name }}/{{ .Namespace }} "
            "{{ .Invoker.Kind }} {{ .Invoker.APIGroup }} {{ .RetryLeft }}",
            "Failed failed <x> & y 10s bs-1/demo BackupConfiguration stash.appscode.com 0",
        ),
        (
            '{{ if eq .Status.Phase "Failed" }}bad{{ else if eq .Status.Phase "Succeeded" }}good'
            "{{ else }}?{{ end }}",
            "bad",
        ),
        ("{{ with .Target }}{{ .Kind }}/{{ .Name }}{{ end }}", "Deployment/stash-demo"),
        ("{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ $y := 3 }}{{ end }}{{ $x }}", "2"),
        ("{{ with $x := .Status.Error }}{{ $x }}{{ else }}{{ $x }}none{{ end }}", "failed <x> & y"),
        ("{{ if $y := .RetryLeft }}{{ $y }}{{ else }}zero {{ $y }}{{ end }}", "zero 0"),
        ('{{ print 1 2 "a" 3 true nil }}|{{ println "a" 1 }}|', "1 2a3 true <nil>|a 1\n|"),
        (
            '{{ printf "%d %s %v %q %t %5.2f %-4s| %05d %x %x" 7 "s" .Target "q\\"" true 3.14159 "ab" 42 255 '
            '"hi" }}',
            '7 s {apps/v1 Deployment stash-demo } "q\\"" true  3.14 ab  | 00042 ff 6869',
        ),
        (
            '{{ printf "%s %d" "only" }}|{{ printf "%d" "str" }}|{{ printf "x" 1 }}',
            ("only %!d(MISSING)|%!d(string=str)|x%!(EXTRA int=1)"),
        ),
        (
            "{{ toJson . }}",
            '{"name":"bs-1","namespace":"demo","invoker":{"apiGroup":"stash.appscode.com",'
            '"kind":"BackupConfiguration","name":"bc"},"target":{"apiVersion":"apps/v1","kind":"Deployment",'
            '"name":"stash-demo"},"status":{"phase":"Failed","duration":"10s",'
            '"error":"failed \\u003cx\\u003e \\u0026 y"}}',
        ),
        ("{{ .Target }} {{ .Status }}", "{apps/v1 Deployment stash-demo } {Failed 10s failed <x> & y}"),
        (
            '{{ $m := dict "a" 1 "b" "x" }}{{ $m }} {{ $m.a }} {{ $m.zz }} {{ index $m "b" }} {{ len $m }}',
            "map[a:1 b:x] 1 <no value> x 2",
        ),
        (
            '{{ $m := dict "k" nil }}{{ $m.k }}|{{ index $m "k" }}|{{ index $m "zz" }}|{{ print $m.zz }}'
            '|{{ printf "%v" nil }}',
            "<no value>|<no value>|<no value>|<nil>|<nil>",
        ),
        ('a  {{- "b" -}}  c {{-3}} {{ 3.5 }} {{ 1e3 }} {{ 0x10 }}', "abc -3 3.5 1000 16"),
        ("{{/* comment */}}x{{- /* c2 */ -}}  y", "xy"),
        ('{{ and 1 0 }} {{ or 0 "" "z" }} {{ not .Name }} {{ and .Name .Namespace }}', "0 z false demo"),
        ('{{ "a" | printf "%s-%s" "b" }} {{ .Name | upper }}', "b-a BS-1"),
        ('{{ ne .Status.Phase "Failed" }} {{ lt 1 2 }}', "false true"),
        ('{{ `raw\\n` }} {{ "esc\\t\\u00e9" }}', "raw\\n esc\té"),
        ('{{ (.Target).Name }} {{ (dict "k" "v").k }}', "stash-demo v"),
        ("{{ .Name }}}}", "bs-1}}"),
        ("{{ .Name}}{{.Namespace}}", "bs-1demo"),
        ('{{ printf "%s" .Name | printf "<%s>" }}', "<bs-1>"),
        ("no template at all  ", "no template at all  "),
    ],
)
def test_renders_as_go_text_template(template: str, expected: str) -> None:
    """Fields, variables and their scopes, if/else if/else, with, pipes, functions, literals, comments,
    trim markers and Go's printing of every value kind (``<no value>``, ``<nil>``, maps, structs) come out
    as Go prints them; a text without ``{{`` is left exactly as it is (not even trimmed)."""
    assert render(template, ROOT) == expected


@pytest.mark.parametrize(
    ("template", "error"),
    [
        ("{{ .Nope }}", r"line 1: can't evaluate field Nope in type \*v1beta1.Summary"),
        ("{{ .Status.Nope }}", "can't evaluate field Nope in type v1beta1.TargetStatus"),
        ("{{ .Name.Foo }}", "can't evaluate field Foo"),
        ('{{ eq 1 "a" }}', "incompatible types for comparison"),
        ("{{ range .X }}{{ end }}", r"\{\{range\}\} is not supported"),
        ('{{ template "x" }}', r"\{\{template\}\} is not supported"),
        ("{{ call .X }}", 'function "call" not defined'),
        ('{{ env "HOME" }}', 'function "env" not defined'),
        ("{{ if .Name }}", r"\{\{if\}\} without \{\{end\}\}"),
        ("{{ else }}", r"unexpected \{\{else\}\}"),
        ("{{ end }}", r"unexpected \{\{end\}\}"),
        ("x\n{{ .Name", "line 2: unclosed action"),
        ('{{ "abc }}', "unterminated quoted string"),
        ("{{ nil }}", "nil is not a command"),
        ("{{ $undefined }}", "undefined variable"),
        ('{{ .Name "x" }}', "can't give argument to non-function"),
    ],
)
def test_what_go_refuses_is_refused_and_nothing_runs_code(template: str, error: str) -> None:
    """Missing struct fields, bad comparisons, unknown functions (``call``, ``env``: nothing reaches code
    or the environment), unsupported actions and syntax errors raise TemplateError with the line."""
    with pytest.raises(TemplateError, match=error):
        render(template, ROOT)


def test_template_errors_never_quote_the_template() -> None:
    """An error says where and what, not the text around it (a body may hold a webhook token)."""
    with pytest.raises(TemplateError) as caught:
        render('token-s3cr3t {{ printf "%s" .Nope }} token-s3cr3t', ROOT)
    assert "s3cr3t" not in str(caught.value)


def test_stash_guide_spelling_of_api_version_is_accepted_but_not_printed() -> None:
    """Stash's guide names ``.Target.ApiVersion`` and ``.Invoker.ApiVersion``: both read, neither shows
    up when the struct is printed or written as JSON (Go's structs have no such field)."""
    assert render("{{ .Target.ApiVersion }} {{ .Invoker.ApiVersion }}", ROOT) == (
        "apps/v1 stash.appscode.com/v1beta1"
    )
    assert "ApiVersion" not in render("{{ toJson .Invoker }}{{ .Invoker }}", ROOT)


def test_sprintf_and_to_json_edges() -> None:
    """Go's %% and zero padding of negatives; JSON of nested maps sorted, lists, nil, U+2028."""
    assert sprintf("%d%% %05d %-3d|", 50, -42, 7) == "50% -0042 7  |"
    assert to_json({"b": [1, None], "a": {"z": "\u2028", "y": True}}) == (
        '{"a":{"y":true,"z":"\\u2028"},"b":[1,null]}'
    )
