"""Template rendering: quoting, injection payloads, the sandbox, parameter types, seeds."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jinja2.sandbox import SandboxedEnvironment

from hpcportal.errors import InvalidInput
from hpcportal.services import template_render as tr
from hpcportal.services.template_render import TemplateParameter as P
from hpcportal.services.template_seeds import SITE_TEMPLATES, SeedTemplate

TEXT = P(name="text", type="string")


def render(source: str, params: list[P], given: dict[str, Any], **kw: Any) -> str:
    return tr.render_job(source, params, kw.get("defaults", {}), given).script


def refused(source: str, params: list[P], given: dict[str, Any]) -> str:
    with pytest.raises(InvalidInput) as info:
        tr.render_job(source, params, {}, given)
    return info.value.message


# --- Quoting and injection ------------------------------------------------------------

PAYLOADS = [
    "$(rm -rf ~)",
    "`rm -rf ~`",
    "x; rm -rf ~",
    "x && touch pwned",
    "x | tee pwned",
    "'; touch pwned; echo '",
    '"; touch pwned; echo "',
    "${HOME}",
    "*",
    "~",
    "a\\b",
    "$((1+1))",
    "> pwned",
    "#SBATCH --uid=0",
    "",
]


def test_the_environment_is_a_strict_sandbox_without_autoescape() -> None:
    env = tr.ENVIRONMENT
    assert isinstance(env, SandboxedEnvironment)
    assert env.autoescape is False
    assert env.finalize is not None


@pytest.mark.parametrize("payload", PAYLOADS)
def test_every_output_is_one_shell_quoted_word(payload: str) -> None:
    script = render("echo {{ text }}\n", [TEXT], {"text": payload})
    assert script == f"echo {shlex.quote(payload)}\n"


@pytest.mark.parametrize("payload", [*PAYLOADS, "\\'; touch pwned; echo '", "\\x27; touch pwned"])
def test_bash_sees_the_value_verbatim_and_runs_nothing(payload: str, tmp_path: Path) -> None:
    """The real proof: bash prints the value as one argument and creates no file."""
    script = render("printf '[%s]\\n' {{ text }}\n", [TEXT], {"text": payload})
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"[{payload}]\n"
    assert list(tmp_path.iterdir()) == []


def test_literals_and_expressions_are_quoted_too() -> None:
    script = render("echo {{ 'a b' }} {{ text ~ '!' }}\n", [TEXT], {"text": "x y"})
    assert script == "echo 'a b' 'x y!'\n"


@pytest.mark.parametrize(
    "payload", ["x\n#SBATCH --uid=0", "x\ry", "tab\there", "nul\x00", "x\u2028y", "esc\x1b[0m"]
)
def test_control_characters_in_strings_are_refused(payload: str) -> None:
    message = refused("echo {{ text }}\n", [TEXT], {"text": payload})
    assert "'text'" in message
    assert "control characters" in message


# --- Where values may appear ----------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "where"),
    [
        ('echo "{{ text }}"\n', "double quotes"),
        ("echo '{{ text }}'\n", "single quotes"),
        ("echo $'{{ text }}'\n", "single quotes"),
        ("echo `echo {{ text }}`\n", "backticks"),
        ("cat <<EOF\nhello {{ text }}\nEOF\n", "an unquoted here-document"),
        ("cat <<-END\n\thello {{ text }}\n\tEND\n", "an unquoted here-document"),
        ('echo "multi\nline {{ text }}"\n', "double quotes"),
        ("echo \\{{ text }}\n", "a backslash escape"),
        ('echo "\\{{ text }}"\n', "a backslash escape"),
        ("echo ${{ text }}\n", "a $ expansion"),
    ],
)
def test_values_inside_quotes_or_expanding_heredocs_are_refused(source: str, where: str) -> None:
    message = refused(source, [TEXT], {"text": "x"})
    assert where in message
    assert "Line " in message


@pytest.mark.parametrize(
    "source",
    [
        "echo {{ text }}\n",
        "echo prefix-{{ text }}-suffix\n",
        "# a comment mentioning {{ text }}\n",
        "cat <<'EOF'\nliteral {{ text }}\nEOF\necho {{ text }}\n",
        'echo "quoted" {{ text }} "again"\n',
        "echo it\\'s {{ text }}\n",
        "cat <<< {{ text }}\necho {{ text }}\n",
        "echo $(( 1 + {{ text }} ))\n",
    ],
)
def test_values_as_bare_words_comments_or_literal_heredocs_are_fine(source: str) -> None:
    assert render(source, [TEXT], {"text": "x"})


# --- #SBATCH directives ---------------------------------------------------------------


def test_a_string_value_may_not_write_a_directive() -> None:
    message = refused("#SBATCH --job-name={{ text }}\necho hi\n", [TEXT], {"text": "x"})
    assert "'text'" in message and "#SBATCH" in message


def test_the_directive_check_holds_even_if_a_newline_got_through() -> None:
    """Defence in depth: called below the string check, a newline is still caught."""
    params = [P(name="note", type="string")]
    with pytest.raises(InvalidInput, match="'note'"):
        tr.render_script("# note: {{ note }}\necho hi\n", params, {"note": "x\n#SBATCH --uid=0"})


def test_numbers_choices_and_booleans_may_shape_directives() -> None:
    params = [
        P(name="cpus", type="integer", default=2),
        P(name="qos", type="choice", choices=["normal", "high"], default="normal"),
        P(name="mail", type="boolean"),
    ]
    source = (
        "#SBATCH --cpus-per-task={{ cpus }}\n#SBATCH --qos={{ qos }}\n"
        "{% if mail %}\n#SBATCH --mail-type=END\n{% endif %}\necho hi\n"
    )
    script = render(source, params, {"cpus": 4, "qos": "high", "mail": True})
    assert tr.directives(script) == [
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --qos=high",
        "#SBATCH --mail-type=END",
    ]


def test_directives_are_matched_generously() -> None:
    assert tr.directives("#SBATCH -n 1\n  # sbatch --x\n#!/bin/bash\necho #SBATCH\n") == [
        "#SBATCH -n 1",
        "  # sbatch --x",
    ]


# --- The sandbox ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ text.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{{ c }}{% endfor %}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ self._TemplateReference__context }}",
        "{{ text|attr('__class__') }}",
        "{{ '{0.__class__}'.format(text) }}",
        "{{ range.__self__ }}",
    ],
)
def test_python_internals_are_out_of_reach(source: str) -> None:
    message = refused(source + "\n", [TEXT], {"text": "x"})
    assert message.startswith("The template")
    assert "<class" not in message and "subclasses" not in message


@pytest.mark.parametrize(
    "source", ["{{ 'a' * 10**9 }}", "{{ 2 ** (10 ** 8) }}", "{{ range(10**9)|length }}"]
)
def test_huge_values_are_refused(source: str) -> None:
    assert refused(source + "\n", [], {})


def test_the_output_size_is_bounded() -> None:
    source = (
        "{% for i in range(99999) %}{% for j in range(99999) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    )
    assert "larger than" in refused(source, [], {})


def test_syntax_errors_name_the_line() -> None:
    message = refused("#!/bin/bash\necho ok\n{% if %}\n", [], {})
    assert message.startswith("Template syntax error on line 3:")


def test_runtime_errors_are_422_with_the_line() -> None:
    assert "'nothing' is undefined" in refused("echo\necho {{ nothing }}\n", [], {})
    assert "on line 2" in refused("echo\necho {{ 1 / 0 }}\n", [], {})


# --- Parameter values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "raw", "value"),
    [
        (P(name="n", type="integer", min=1, max=8), 4, 4),
        (P(name="n", type="integer"), "12", 12),
        (P(name="n", type="integer"), 3.0, 3),
        (P(name="x", type="number", min=0), "0.5", 0.5),
        (P(name="x", type="number"), 2, 2),
        (P(name="c", type="choice", choices=["a", "b"]), "b", "b"),
        (P(name="c", type="choice", choices=["1", "2"]), 2, "2"),
        (P(name="b", type="boolean"), "yes", True),
        (P(name="b", type="boolean"), False, False),
        (P(name="b", type="boolean"), "off", False),
        (P(name="f", type="file"), "20261121-abc/data.csv", "20261121-abc/data.csv"),
        (P(name="s", type="string", max_length=3), "abc", "abc"),
    ],
)
def test_values_are_coerced_to_their_type(param: P, raw: object, value: object) -> None:
    got = tr.coerce_value(param, raw)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(
    ("param", "raw", "message"),
    [
        (P(name="n", type="integer", min=1, max=8), 9, "at most 8"),
        (P(name="n", type="integer", min=1, max=8), 0, "at least 1"),
        (P(name="n", type="integer"), 1.5, "whole number"),
        (P(name="n", type="integer"), "ten", "whole number"),
        (P(name="n", type="integer"), True, "whole number"),
        (P(name="x", type="number", max=1.5), 2, "at most 1.5"),
        (P(name="x", type="number"), "nan", "a number"),
        (P(name="x", type="number"), "inf", "a number"),
        (P(name="c", type="choice", choices=["a", "b"]), "c", "choose one of a, b"),
        (P(name="b", type="boolean"), "maybe", "true or false"),
        (P(name="s", type="string", max_length=3), "abcd", "at most 3"),
        (P(name="s", type="string"), 5, "give text"),
        (P(name="f", type="file"), "../etc/passwd", "upload id"),
        (P(name="f", type="file"), "/etc/passwd", "upload id"),
        (P(name="f", type="file"), "abc/..", "upload id"),
        (P(name="f", type="file"), "a/b/c", "upload id"),
        (P(name="f", type="file"), "abc/x\ny", "upload id"),
    ],
)
def test_bad_values_are_422_naming_the_parameter(param: P, raw: object, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        tr.coerce_value(param, raw)
    assert info.value.message.startswith(f"Parameter {param.name!r}: ")
    assert message in info.value.message


def test_unknown_parameters_are_refused() -> None:
    message = refused("echo {{ text }}\n", [TEXT], {"text": "x", "txet": "y"})
    assert "Unknown parameter 'txet'" in message and "Known: text" in message


def test_defaults_and_missing_values() -> None:
    params = [
        P(name="a", type="integer", default=3),
        P(name="b", type="boolean"),
        P(name="c", type="string"),
        P(name="d", type="integer"),
    ]
    assert tr.resolve_values(params, {"d": ""}) == {"a": 3, "b": False, "c": None, "d": None}


def test_required_values_must_be_given() -> None:
    params = [P(name="must", type="string", required=True)]
    for given in ({}, {"must": ""}):
        with pytest.raises(InvalidInput, match="Parameter 'must': a value is required"):
            tr.resolve_values(params, given)


# --- Parameter definitions ------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ({"name": "1abc", "type": "string"}, "parameter name"),
        ({"name": "range", "type": "string"}, "reserved"),
        ({"name": "class", "type": "string"}, "reserved"),
        ({"name": "n", "type": "integer", "min": 5, "max": 1}, "min is larger than max"),
        ({"name": "s", "type": "string", "min": 1}, "min and max are for"),
        ({"name": "n", "type": "integer", "max_length": 3}, "max_length is for"),
        ({"name": "c", "type": "choice"}, "needs choices"),
        ({"name": "s", "type": "string", "choices": ["a"]}, "needs choices"),
        ({"name": "c", "type": "choice", "choices": ["a", "a"]}, "different choices"),
        ({"name": "c", "type": "choice", "choices": ["a\nb"]}, "printable"),
        ({"name": "b", "type": "boolean", "option": "gpus"}, "cannot set option"),
        ({"name": "s", "type": "string", "option": "gpus"}, "cannot set option"),
        ({"name": "s", "type": "string", "option": "script"}, "cannot set option"),
        ({"name": "f", "type": "file", "option": "input_files"}, "cannot set option"),
        ({"name": "n", "type": "integer", "max": 4, "default": 5}, "default: Parameter 'n'"),
        ({"name": "n", "type": "integer", "bogus": 1}, "Extra inputs"),
    ],
)
def test_bad_parameter_definitions_are_refused(definition: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        P.model_validate(definition)
    if message == "reserved":
        message = "reserved word"
    assert message in str(info.value)


def test_labels_default_to_the_name() -> None:
    assert P(name="cpus", type="integer").label == "cpus"


# --- Job requests ---------------------------------------------------------------------


def test_parameters_set_options_and_files_become_input_files() -> None:
    params = [
        P(name="gpus", type="integer", default=1, option="gpus"),
        P(name="partition", type="string", default="gpu", option="partition"),
        P(name="mem", type="integer", default=4, option="memory"),
        P(name="data", type="file"),
    ]
    request = tr.render_job(
        "echo {{ data }}\n",
        params,
        {"time_limit": "10", "input_files": ["u1/a.txt"]},
        {"gpus": 2, "data": "u2/b.csv"},
    )
    assert (request.gpus, request.partition, request.memory) == (2, "gpu", "4")
    assert request.time_limit == "10"
    assert request.input_files == ["u1/a.txt", "u2/b.csv"]


def test_overrides_win_over_parameters_and_defaults() -> None:
    params = [P(name="gpus", type="integer", default=1, option="gpus")]
    request = tr.render_job(
        "echo hi\n", params, {"gpus": 4}, {"gpus": 2}, {"gpus": 3, "input_files": ["u/x"]}
    )
    assert request.gpus == 3 and request.input_files == ["u/x"]


def test_overrides_cannot_replace_the_script_or_invent_fields() -> None:
    with pytest.raises(InvalidInput, match="cannot set 'script'"):
        tr.render_job("echo hi\n", [], {}, {}, {"script": "rm -rf ~"})
    with pytest.raises(InvalidInput, match="bogus"):
        tr.render_job("echo hi\n", [], {}, {}, {"bogus": 1})


def test_an_invalid_option_value_names_the_parameter_that_set_it() -> None:
    params = [P(name="where", type="string", option="partition")]
    message = refused("echo hi\n", params, {"where": "no such/partition"})
    assert message.startswith("Parameter 'where' (sets partition):")


def test_default_options_are_validated_and_normalised() -> None:
    assert tr.validate_options({"memory": "4g", "gpus": 1}) == {"memory": "4G", "gpus": 1}
    with pytest.raises(InvalidInput, match="time_limit"):
        tr.validate_options({"time_limit": "soon"})
    with pytest.raises(InvalidInput, match="script"):
        tr.validate_options({"script": "echo"})


def test_check_template_tries_the_template_with_sample_values() -> None:
    params = [P(name="n", type="integer", min=3), P(name="c", type="choice", choices=["x"])]
    assert tr.check_template("echo {{ n }} {{ c }}\n", params, {}) == {}
    with pytest.raises(InvalidInput, match="#SBATCH"):
        tr.check_template("#SBATCH -J {{ text }}\n", [TEXT], {})
    with pytest.raises(InvalidInput, match="not allowed"):
        tr.check_template("{{ ''.__class__ }}\n", [], {})


# --- Seeds ----------------------------------------------------------------------------


def _required_values(seed: SeedTemplate) -> dict[str, Any]:
    return {p.name: "sample-image" for p in seed.parameters if p.required and p.default is None}


@pytest.mark.parametrize("seed", SITE_TEMPLATES, ids=lambda s: s.slug)
def test_each_seed_renders_to_a_valid_job_request(seed: SeedTemplate) -> None:
    options = tr.check_template(seed.script, seed.parameters, seed.options)
    request = tr.render_job(seed.script, seed.parameters, options, _required_values(seed))
    assert request.script.startswith("#!/bin/bash\n")
    assert "{{" not in request.script


def test_seeds_have_unique_slugs_and_the_expected_shapes() -> None:
    by_slug = {s.slug: s for s in SITE_TEMPLATES}
    assert len(by_slug) == len(SITE_TEMPLATES) == 5
    gpu = tr.render_job(by_slug["pytorch-gpu"].script, by_slug["pytorch-gpu"].parameters, {}, {})
    assert (gpu.partition, gpu.gpus) == ("gpu", 1)
    assert "python3 -m torch" in gpu.script
    array = by_slug["job-array"]
    job = tr.render_job(array.script, array.parameters, {}, {"array": "1-3"})
    assert job.array == "1-3" and "$SLURM_ARRAY_TASK_ID" in job.script
    mpi = by_slug["mpi-hello"]
    job = tr.render_job(mpi.script, mpi.parameters, {}, {"nodes": 2, "ntasks": 8})
    assert (job.nodes, job.ntasks) == (2, 8) and "srun hostname" in job.script
    box = by_slug["apptainer-run"]
    job = tr.render_job(box.script, box.parameters, {}, {"image": "ubuntu-24.04"})
    assert job.apptainer_image == "ubuntu-24.04"
    assert all(p.type != "file" for p in box.parameters)


def test_the_python_seed_runs_a_file_or_inline_code() -> None:
    seed = next(s for s in SITE_TEMPLATES if s.slug == "python-script")
    job = tr.render_job(seed.script, seed.parameters, {}, {"cpus": 4, "time": "30"})
    assert "python3 main.py" in job.script and job.cpus_per_task == 4
    job = tr.render_job(seed.script, seed.parameters, {}, {"code": "print('hi')"})
    assert "python3 -c 'print('\"'\"'hi'\"'\"')'" in job.script
