"""Stage `evaluate` of one (benchmark, method, seed) chain: how good the derived genotype is, by the benchmark's
evaluator (`benchmarks.<name>.evaluation`, `itnas.evaluators`): the network of the train stage tested once on the
test split (`train`), or both derived cells looked up in the NAS-Bench-201 table (`nb201`) -> runs/<chain>/evaluate/
details.json and runs/<chain>/metrics.json (which names its evaluator); a tested network's confusion matrix also
becomes a DVC plot, runs/<chain>/live/evaluate/ (`pipeline.live.log_confusion_matrix`).

It reads neither the supernet nor search_metrics.json (the report takes the search time from there), so a new
search that derives the same genotypes re-evaluates nothing, and it trains nothing: testing anew retrains nothing.
"""

from __future__ import annotations

from itnas.data import load_train_data, loader_options
from itnas.evaluators import EvalJob
from itnas.evaluators.registry import get_evaluator
from itnas.params import load_params

from .common import console, use_threads
from .live import log_confusion_matrix
from .paths import prepared_dirs, run_record


def evaluate(benchmark: str, method: str, seed: int, params_file: str = "params.yaml") -> None:
    params = load_params(params_file)
    evaluator = get_evaluator(params.evaluation(benchmark), f"benchmarks.{benchmark}.evaluation")
    dcfg, device = params.data_config(benchmark), params.torch_device()
    use_threads(params, device)
    job = EvalJob(record=run_record(benchmark, method, seed), derivation=params.derive.mode,
                  batch_size=params.evaluate.batch_size, device=device,
                  loader_kw=loader_options(params.train_config(benchmark).data.num_workers, device),  # {} on a CPU
                  load_data=lambda: load_train_data(prepared_dirs(benchmark)[1], dcfg.root, dcfg.download),
                  test_resize=params.evaluate.test_resize)
    metrics, details, line = evaluator.evaluate(job)
    job.record.write_json("details", details)
    job.record.write_json("metrics", metrics, exclude={"search_time_s"})  # the report reads search_metrics.json
    matrix = getattr(details, "confusion_matrix", None)  # a tested network's (train evaluator): a DVC plot
    if matrix is not None:
        log_confusion_matrix(job.record.live_evaluate, matrix, details.classes)
    console.print(line)
