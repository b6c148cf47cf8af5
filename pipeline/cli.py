"""`itnas` command line: one subcommand per DVC stage, plus `bench`.

    itnas check-params                       itnas prepare BENCHMARK
    itnas search BENCHMARK METHOD SEED       itnas derive BENCHMARK METHOD SEED
    itnas train BENCHMARK METHOD SEED        itnas evaluate BENCHMARK METHOD SEED
    itnas report
    itnas bench
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import typer
from rich.markup import escape

from itnas.errors import ItnasError
from itnas.methods import list_methods
from itnas.params import load_params
from itnas.run import RunFileMissing

from .common import console, launch, report_rank_error, setup_logging, torchrun_command

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="ITNAS: differentiable NAS with inter-layer transitions, as a DVC pipeline.")

PARAMS = typer.Option("params.yaml", "--params", help="params file (YAML)")
BENCHMARK = typer.Argument(..., help="benchmark: a name under `benchmarks` in params.yaml (e.g. fmnist, nb201)")
METHOD = typer.Argument(..., help=f"method: {', '.join(list_methods())}")
SEED = typer.Argument(..., help="search / training seed")


def user_message(err: ItnasError) -> str:
    """The message of a user error; for a missing run file (`itnas.run.RunFileMissing`, which knows the stage that
    writes it but no commands), with the command that writes it."""
    if isinstance(err, RunFileMissing):
        r = err.run
        return f"{err}; run `dvc repro` or `itnas {err.stage} {r.benchmark} {r.method} {r.seed}`"
    return str(err)


def _run(fn: Callable, *args, distributed: bool = False) -> None:
    """Run a stage; a user error (`itnas.errors.ItnasError`) ends with its one-paragraph message and exit code 2,
    anything else (a bug) with its traceback. A stage that can run data-parallel (`distributed`) reruns itself under
    torchrun when params.yaml's `distributed` block asks for more than one process (`pipeline.common.launch`): a user
    error on any of its processes ends the job the same way."""
    setup_logging()
    try:
        if distributed:
            cmd = torchrun_command(load_params(args[-1]), sys.argv[1:])
            if cmd is not None:
                console.print(f"launching: {' '.join(cmd)}")
                launch(cmd)
                return
        fn(*args)
    except ItnasError as err:
        msg = user_message(err)
        if not report_rank_error(msg):  # a torchrun rank leaves it to the launcher
            # one line stays one line; escaped: "[b]" in a message is text, not Rich markup
            console.print(f"[red]error:[/red] {escape(msg)}", soft_wrap=True)
        sys.exit(2)


@app.command("check-params")
def check_params(params: str = PARAMS) -> None:
    """Validate the whole params file (first stage of dvc.yaml), remove checkpoints no stage can resume."""
    from .check import check_params as stage
    _run(stage, params)


@app.command()
def prepare(benchmark: str = BENCHMARK, params: str = PARAMS) -> None:
    """Load a benchmark's data set, split search-train / search-val / train / test: data/prepared/<benchmark>/."""
    from .prepare import prepare as stage
    _run(stage, benchmark, params)


@app.command()
def search(benchmark: str = BENCHMARK, method: str = METHOD, seed: int = SEED, params: str = PARAMS) -> None:
    """Supernet search of one chain: runs/<benchmark>/<method>-s<seed>/search/."""
    from .search import search as stage
    _run(stage, benchmark, method, seed, params, distributed=True)


@app.command()
def derive(benchmark: str = BENCHMARK, method: str = METHOD, seed: int = SEED, params: str = PARAMS) -> None:
    """Derive the genotype of a searched supernet: runs/<benchmark>/<method>-s<seed>/genotype.json."""
    from .derive import derive as stage
    _run(stage, benchmark, method, seed, params)


@app.command()
def train(benchmark: str = BENCHMARK, method: str = METHOD, seed: int = SEED, params: str = PARAMS) -> None:
    """Train the final network of a genotype from scratch: runs/<benchmark>/<method>-s<seed>/train/."""
    from .train import train as stage
    _run(stage, benchmark, method, seed, params, distributed=True)


@app.command()
def evaluate(benchmark: str = BENCHMARK, method: str = METHOD, seed: int = SEED, params: str = PARAMS) -> None:
    """Evaluate a genotype (test the trained network, or look it up in a table): runs/<benchmark>/<method>-s<seed>/."""
    from .evaluate import evaluate as stage
    _run(stage, benchmark, method, seed, params)


@app.command()
def report(params: str = PARAMS,
           runs_dir: str = typer.Option("runs", "--runs-dir", help="folder of the chains' run folders"),
           out_dir: str = typer.Option("reports", "--out-dir", help="report.md/html and summary.json go here")
           ) -> None:
    """Cross-benchmark ablation report over every chain of `runs`: report.md, report.html, summary.json."""
    from .report import report as stage
    _run(stage, params, runs_dir, out_dir)


@app.command()
def bench(
    methods: list[str] = typer.Option(["itnas,itnas_noattn,itnas_notrans,darts,pcdarts"], "--methods", "-m",
                                      help="comma-separated methods"),
    bases: list[str] = typer.Option(["darts,pcdarts"], "--bases", "-b", help="comma-separated bases"),
    C: int = typer.Option(16, "-C", help="search supernet channels"),
    layers: int = typer.Option(8, help="search supernet cells"),
    batch_size: int = typer.Option(32, help="batch size (B)"),
    image_size: int = typer.Option(32, help="input side (px)"),
    in_channels: int = typer.Option(3, help="input channels"),
    rounds: int = typer.Option(5, help="timed rounds (median reported)"),
    warmup: int = typer.Option(1, help="untimed warm-up steps per config"),
    order: str = typer.Option("first", help="first | second"),
    final_C: int = typer.Option(36, "--final-C", help="final network channels"),
    final_layers: int = typer.Option(20, help="final network cells"),
    genotype: str = typer.Option(None, help="genotype.json for the final network (default: DARTS_V2)"),
    out: str = typer.Option("reports/bench.json", help="JSON output"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    threads: int = typer.Option(0, help="torch intra-op threads (0 = default)"),
    against: str = typer.Option(None, "--against",
                                help="checkout of other code: time its steps and this checkout's side by side"),
    amp: str = typer.Option("off", help="off | bf16 | fp16"),
    dtype: str = typer.Option("float32", help="float32 | float64"),
    channels_last: bool = typer.Option(False, "--channels-last"),
    compiled: bool = typer.Option(False, "--compile",
                                  help="also time each search step with the network forward torch.compile'd"),
) -> None:
    """Time the search step (weight and arch steps apart; aten ops per step) of every method x base and the final
    train step."""
    from itnas_bench.bench import bench as command
    _run(command, methods, bases, C, layers, batch_size, image_size, in_channels, rounds, warmup, order, final_C,
         final_layers, genotype, out, device, threads, against, amp, dtype, channels_last, compiled)


if __name__ == "__main__":
    app()
