"""`whisper-eas search`: which (layer, sparsity) EAS configuration to run for a model on a device.

The search evaluates dense and every configuration of a grid on a dataset, measuring WER and
runtime (end-to-end and encoder seconds, median of `--repeats` passes after a warm-up, on the
device the model runs on). Dense is measured at the start and at the end; the baseline is the
median of the two, and a gap of more than 10% between them means the machine was busy.

Then it reports

* the Pareto front of (end-to-end speedup, WER): the configurations no other one beats on both;
* the pick: the fastest configuration whose WER loss against dense is within the budget
  (absolute, or relative to dense WER), with a paired bootstrap 95% confidence interval of the
  loss. A pick whose interval reaches past the budget is flagged "not significant at 95%": it
  may only be lucky on this sample;
* results.jsonl (the cache), results.csv, results.json, table.md, PNG plots and profile.json, all
  in the output folder: `transcribe --profile FILE` runs the profile, and `--eas auto` runs it
  once it is installed (`whisper-eas profile install FILE`, a separate, announced step).

Tie rules (for the pick and the front). Speedups are compared at the two decimals the table
shows (timing noise is far larger than 0.005x), so 1.503x and 1.498x tie. Among tied speeds the
lower WER wins, then the fewer encoder tokens kept, then the earlier configuration in grid order
(dense first, then layer by layer, sparsity ascending). On the front a configuration is dropped
when another one is at least as fast and at least as accurate and strictly better in one of the
two; exact ties in both stay on the front together.

Resuming: each evaluated configuration is appended to results.jsonl (flushed and fsynced) with
its per-utterance error counts, under a header holding the cache key (model fingerprint, device,
dtype, threads, dataset and a hash of its utterances, limit, decoding options, repeats). A rerun
with the same output directory skips what is there; without --output-dir the newest unfinished
search of the same key under runs/ is resumed.

The search handles no tensors: it talks to a WhisperModel only through `evaluate`, which the
caller may replace (tests inject a fake one).
"""

from .cache import (CACHE_FORMAT, Cache, Measurement, ModelInfo, cache_key, decoding_options,  # noqa: F401
                    default_output_dir)
from .grid import DEFAULT_SPARSITIES, DENSE, DENSE_END, Candidate, GridSpec, build_grid  # noqa: F401
from .report import (CSV_FIELDS, make_profile, markdown_table, report, summary_json, write_csv,  # noqa: F401
                     write_markdown, write_outputs)
from .run import EvaluateFn, Outcome, Settings, measure, run_search, summarize  # noqa: F401
from .select import Baseline, Pick, Row, baseline, dominates, make_row, pareto_front, pick, rank_key  # noqa: F401

__all__ = ['DENSE', 'DENSE_END', 'DEFAULT_SPARSITIES', 'Candidate', 'GridSpec', 'build_grid', 'CACHE_FORMAT',
           'Measurement', 'ModelInfo', 'cache_key', 'decoding_options', 'Cache', 'default_output_dir', 'Row',
           'Pick', 'Baseline', 'rank_key', 'dominates', 'pareto_front', 'pick', 'baseline', 'make_row',
           'EvaluateFn', 'Settings', 'Outcome', 'measure', 'run_search', 'summarize', 'CSV_FIELDS',
           'write_csv', 'summary_json', 'markdown_table', 'write_markdown', 'make_profile', 'write_outputs',
           'report']
