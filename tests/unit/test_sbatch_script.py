"""``services.sbatch_script``: reading ``#SBATCH`` headers as sbatch does, the form's
conflicts with them, and the argv built from the form (pure functions, no Slurm).

What sbatch itself makes of these scripts is exercised against the dev cluster in
``tests/integration``; here each rule is pinned with a script that breaks it.
"""

from __future__ import annotations

import pytest

from hpcportal.services.sbatch_script import (
    Directive,
    conflicts,
    directive_header,
    environment_names,
    form_options,
    header_lines,
    parse_directives,
    sets_option,
    wants_gpus,
)
from hpcportal.services.submit_models import JobRequest

SCRIPT = """#!/bin/bash
#SBATCH --job-name=demo
#SBATCH -p gpu --time 1:00:00
# a plain comment

#SBATCH -c4 --mem=8G  # trailing comment
echo start
#SBATCH --partition=ignored
"""


def _request(**fields: object) -> JobRequest:
    return JobRequest.model_validate({"script": "#!/bin/bash\necho hi\n", **fields})


# --- the header ------------------------------------------------------------------------


def test_header_is_after_the_shebang_up_to_the_first_command() -> None:
    numbers = [number for number, _ in header_lines(SCRIPT)]
    assert numbers == [2, 3, 4, 5, 6]  # the shebang skipped; `echo start` ends it


def test_a_shebang_only_counts_on_the_first_line() -> None:
    assert header_lines("\n#!/bin/sh\n#SBATCH -N 2\n") == [
        (1, ""),
        (2, "#!/bin/sh"),
        (3, "#SBATCH -N 2"),
    ]


def test_directives_in_every_spelling_sbatch_accepts() -> None:
    assert parse_directives(SCRIPT) == [
        Directive("--job-name", "demo", 2),
        Directive("--partition", "gpu", 3),
        Directive("--time", "1:00:00", 3),
        Directive("--cpus-per-task", "4", 6),
        Directive("--mem", "8G", 6),
    ]


def test_directives_after_the_first_command_are_not_read() -> None:
    assert not any(d.value == "ignored" for d in parse_directives(SCRIPT))


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("#SBATCH -J=name", [Directive("--job-name", "name", 2)]),
        ("#SBATCH -N 2", [Directive("--nodes", "2", 2)]),
        ("#SBATCH --exclusive", [Directive("--exclusive", "", 2)]),
        (
            "#SBATCH --exclusive -N 2",
            [Directive("--exclusive", "", 2), Directive("--nodes", "2", 2)],
        ),
        ("#SBATCH -x node1", [Directive("-x", "node1", 2)]),  # no long name known: kept short
        ("  #SBATCH --qos=high", [Directive("--qos", "high", 2)]),
        ('#SBATCH --job-name "two words"', [Directive("--job-name", "two words", 2)]),
        ("#SBATCHX --qos=high", []),  # not a directive line
        ("#SBATCH --comment 'unbalanced", []),  # sbatch-unreadable quoting: skipped
        ("## SBATCH --qos=high", []),
    ],
)
def test_one_directive_line(line: str, expected: list[Directive]) -> None:
    assert parse_directives(f"#!/bin/bash\n{line}\necho\n") == expected


def test_directive_header_keeps_only_the_sbatch_lines_of_the_header() -> None:
    assert directive_header(SCRIPT) == (
        "#SBATCH --job-name=demo\n#SBATCH -p gpu --time 1:00:00\n"
        "#SBATCH -c4 --mem=8G  # trailing comment"
    )


def test_sets_option() -> None:
    directives = parse_directives(SCRIPT)
    assert sets_option(directives, "--partition")
    assert not sets_option(directives, "--account")


# --- the form and the script -----------------------------------------------------------


def test_form_options_one_argv_element_each_in_a_fixed_order() -> None:
    request = _request(
        time_limit="10",
        name="my job; rm -rf ~",
        partition="debug",
        mail_type=["BEGIN", "END"],
        gpus=0,
    )
    assert form_options(request) == [
        "--job-name=my job; rm -rf ~",
        "--partition=debug",
        "--gpus=0",
        "--time=10",
        "--mail-type=BEGIN,END",
    ]


def test_an_empty_form_adds_no_option() -> None:
    assert form_options(_request()) == []


def test_conflicts_name_the_option_both_values_and_the_line() -> None:
    request = _request(partition="debug", name="demo", time_limit="1:00:00")
    found = conflicts(request, parse_directives(SCRIPT))
    assert [(c.option, c.form_value, c.script_value, c.line) for c in found] == [
        ("--partition", "debug", "gpu", 3)
    ]
    assert "line 3" in found[0].message
    assert "the form wins" in found[0].message


def test_the_same_value_in_another_case_is_no_conflict() -> None:
    script = "#!/bin/bash\n#SBATCH --mem=8g\necho\n"
    assert conflicts(_request(memory="8G"), parse_directives(script)) == []


def test_options_the_form_leaves_empty_never_conflict() -> None:
    assert conflicts(_request(), parse_directives(SCRIPT)) == []


@pytest.mark.parametrize(
    ("gpus", "line", "expected"),
    [
        (2, "", True),
        (0, "", False),
        (None, "#SBATCH --gpus=1", True),
        (None, "#SBATCH --gpus=0", False),
        (None, "#SBATCH --gpus-per-node=2", True),
        (None, "#SBATCH --gres=gpu:a100:1", True),
        (None, "#SBATCH --gres=shard:1", False),
        (None, "#SBATCH -G 1", True),
    ],
)
def test_wants_gpus(gpus: int | None, line: str, expected: bool) -> None:
    directives = parse_directives(f"#!/bin/bash\n{line}\necho\n")
    assert wants_gpus(_request(gpus=gpus), directives) is expected


def test_environment_names_are_shell_safe_and_unique() -> None:
    names = environment_names(
        ["data.csv", "data.txt", "my input-file.tar.gz", ".bashrc", "!!!", "data"]
    )
    assert names == [
        "FILE_DATA",
        "FILE_DATA_2",
        "FILE_MY_INPUT_FILE_TAR",
        "FILE_BASHRC",
        "FILE_INPUT",
        "FILE_DATA_3",
    ]
