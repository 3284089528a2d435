"""The site templates every portal starts with, as data.

``services.templates.seed_site_templates`` adds each one at start-up when no
template has its slug yet; a seed an admin has edited is never overwritten. The
scripts follow the rules of ``template_render``: values are output only as bare
words (they are quoted for you), and options come from parameters' ``option``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hpcportal.services.template_render import TemplateParameter as P


@dataclass(frozen=True)
class SeedTemplate:
    """A site template to create when missing; ``slug`` is its stable identity."""

    slug: str
    name: str
    category: str
    description: str
    script: str
    parameters: tuple[P, ...]
    options: dict[str, Any] = field(default_factory=dict)


PYTHON = SeedTemplate(
    slug="python-script",
    name="Python script",
    category="python",
    description="Run a Python file, or one line of inline code, with the CPUs, memory "
    "and time you choose.",
    script="""#!/bin/bash
#SBATCH --output=python-%j.out
set -euo pipefail
{% if code %}
python3 -c {{ code }}
{% else %}
python3 {{ script_file }}
{% endif %}
""",
    parameters=(
        P(
            name="script_file",
            type="string",
            label="Script file",
            help="A Python file, relative to the working directory.",
            default="main.py",
            max_length=1024,
        ),
        P(
            name="code",
            type="string",
            label="Or inline code",
            help="One line of Python; when given it runs instead of the file.",
            default="",
        ),
        P(
            name="cpus",
            type="integer",
            label="CPUs",
            default=1,
            min=1,
            max=128,
            option="cpus_per_task",
        ),
        P(
            name="memory",
            type="string",
            label="Memory",
            default="2G",
            max_length=16,
            option="memory",
        ),
        P(
            name="time",
            type="string",
            label="Time limit",
            help="Minutes, HH:MM:SS or D-HH:MM:SS.",
            default="01:00:00",
            max_length=16,
            option="time_limit",
        ),
    ),
)

PYTORCH = SeedTemplate(
    slug="pytorch-gpu",
    name="PyTorch training on a GPU",
    category="gpu",
    description="Train a PyTorch model on one node's GPUs with torch.distributed.run "
    "(one process per GPU). Your script gets --epochs and --lr.",
    script="""#!/bin/bash
#SBATCH --output=pytorch-%j.out
set -euo pipefail
echo Job $SLURM_JOB_ID on $(hostname), GPUs: ${CUDA_VISIBLE_DEVICES:-none}
python3 -m torch.utils.collect_env || echo PyTorch is not installed here
python3 -m torch.distributed.run --standalone --nproc_per_node={{ gpus }} \\
    {{ script_file }} --epochs {{ epochs }} --lr {{ learning_rate }}
""",
    parameters=(
        P(name="partition", type="string", label="Partition", default="gpu", option="partition"),
        P(name="gpus", type="integer", label="GPUs", default=1, min=1, max=8, option="gpus"),
        P(name="epochs", type="integer", label="Epochs", default=10, min=1, max=100000),
        P(name="learning_rate", type="number", label="Learning rate", default=0.001, min=0, max=10),
        P(
            name="script_file",
            type="string",
            label="Training script",
            help="A Python file, relative to the working directory.",
            default="train.py",
            max_length=1024,
        ),
    ),
    options={"cpus_per_task": 2, "memory": "2G", "time_limit": "04:00:00"},
)

ARRAY = SeedTemplate(
    slug="job-array",
    name="Job array",
    category="array",
    description="Run the same command once per index; each task sees its index in "
    "$SLURM_ARRAY_TASK_ID (also exported as TASK_ID).",
    script="""#!/bin/bash
#SBATCH --output=array-%A_%a.out
set -euo pipefail
echo Array job $SLURM_ARRAY_JOB_ID, task $SLURM_ARRAY_TASK_ID on $(hostname)
export TASK_ID=$SLURM_ARRAY_TASK_ID
bash -c {{ command }}
""",
    parameters=(
        P(
            name="array",
            type="string",
            label="Array indexes",
            help="Like 0-9, 1,3,5, 0-99:2, or 0-9%2 to run at most two at a time.",
            default="0-9",
            required=True,
            max_length=256,
            option="array",
        ),
        P(
            name="command",
            type="string",
            label="Command per task",
            help="A shell command; use $SLURM_ARRAY_TASK_ID to pick each task's input.",
            default='echo "task $SLURM_ARRAY_TASK_ID"',
            required=True,
        ),
    ),
    options={"time_limit": "00:30:00"},
)

MPI = SeedTemplate(
    slug="mpi-hello",
    name="MPI hello world",
    category="mpi",
    description="Start tasks across nodes with srun; each prints the host it runs on.",
    script="""#!/bin/bash
#SBATCH --output=mpi-hello-%j.out
set -euo pipefail
echo Running {{ ntasks }} tasks on {{ nodes }} nodes
srun hostname
""",
    parameters=(
        P(name="nodes", type="integer", label="Nodes", default=2, min=1, max=1024, option="nodes"),
        P(
            name="ntasks",
            type="integer",
            label="Tasks",
            default=4,
            min=1,
            max=65536,
            option="ntasks",
        ),
    ),
    options={"time_limit": "00:05:00"},
)

APPTAINER = SeedTemplate(
    slug="apptainer-run",
    name="Apptainer run",
    category="containers",
    description="Run a command inside an Apptainer image from the portal's catalog; "
    "the script below runs inside the container.",
    script="""#!/bin/bash
set -euo pipefail
bash -c {{ command }}
""",
    parameters=(
        P(
            name="image",
            type="string",
            label="Image",
            help="An image id from the catalog.",
            required=True,
            max_length=512,
            option="apptainer_image",
        ),
        P(
            name="command",
            type="string",
            label="Command",
            help="A shell command to run in the container.",
            default="cat /etc/os-release",
            required=True,
        ),
        P(
            name="cpus",
            type="integer",
            label="CPUs",
            default=1,
            min=1,
            max=128,
            option="cpus_per_task",
        ),
    ),
    options={"time_limit": "01:00:00"},
)

SITE_TEMPLATES: tuple[SeedTemplate, ...] = (PYTHON, PYTORCH, ARRAY, MPI, APPTAINER)
