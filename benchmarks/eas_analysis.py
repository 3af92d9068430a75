"""Where do the kept tokens fall, and what happens to the decoder when padding goes?

For each EAS configuration, over a manifest: the share of real-audio (speech) tokens kept, the
padding tokens kept, the tokens the decoder's cross-attention sees, the share of the kept tokens'
size (attention mass) that stands for padding, and the utterances that broke (WER > 50% or a
transcript twice the reference's length: cut short or looping).

    python benchmarks/eas_analysis.py data/corpus/dev-short.jsonl --configs "0:0.5" "0:0.7" "0:0.7 drop" "-1:0 pad=16"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from whisper_eas.io.audio import AudioWindows  # noqa: E402
from whisper_eas.network.decoding import Decoder, DecodingOptions  # noqa: E402
from whisper_eas.network.eas import parse_eas  # noqa: E402
from whisper_eas.evaluation.manifest import load_dataset  # noqa: E402
from whisper_eas.evaluation.metrics import corpus_wer, word_errors  # noqa: E402
from whisper_eas import WhisperModel  # noqa: E402


def analyse(whisper, utterances, spec):
    eas = parse_eas(spec)
    decoder = Decoder(whisper.model, whisper.tokenizer, DecodingOptions(without_timestamps=True))
    rows = []
    for u in utterances:
        feats, n = AudioWindows(u.audio).window(0)
        audio_tokens = (n + 1) // 2
        tokens = whisper.encode(feats[None], [n], eas)
        size = tokens.size[0] if tokens.size is not None else torch.ones(tokens.x.shape[1])
        kept = tokens.kept_index[0][size > 0]
        size = size[size > 0]
        speech = kept < audio_tokens
        hyp = decoder.run(tokens, [decoder.initial_tokens()])[0].text.strip()
        errors = word_errors(u.text, hyp)
        broken = errors.ref_len and (errors.wer > 0.5 or len(hyp.split()) > 2 * max(len(u.text.split()), 1))
        rows.append(dict(id=u.id, speech_kept=float(speech.sum()) / max(audio_tokens, 1),
                         pad_kept=int((~speech).sum()), total=int(len(kept)),
                         pad_mass=float(size[~speech].sum() / size.sum()), errors=errors, hyp=hyp, broken=broken))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--configs", nargs="+", default=["0:0.5", "0:0.7", "0:0.7 drop", "0:0.9", "-1:0 pad=16"])
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(2)
    whisper = WhisperModel(args.model, eas=None)  # each configuration is passed explicitly
    utterances = load_dataset(args.manifest, limit=args.limit)
    print("| config | WER | speech tokens kept | padding tokens kept | tokens seen by the decoder | "
          "padding share of attention size | broken utterances |")
    print("|---|---|---|---|---|---|---|")
    broken_examples = []
    for spec in ["dense"] + args.configs:
        rows = analyse(whisper, utterances, None if spec == "dense" else spec)
        n = len(rows)
        wer = corpus_wer([r["errors"] for r in rows])
        broken = [r for r in rows if r["broken"]]
        print(f"| {spec} | {wer:.2%} | {sum(r['speech_kept'] for r in rows) / n:.1%} | "
              f"{sum(r['pad_kept'] for r in rows) / n:.0f} | {sum(r['total'] for r in rows) / n:.0f} | "
              f"{sum(r['pad_mass'] for r in rows) / n:.1%} | {len(broken)} |")
        broken_examples += [(spec, r) for r in broken[:3]]
    print()
    for spec, r in broken_examples:
        print(f"- `{spec}` {r['id']}: \"{r['hyp'][:120]}\"")


if __name__ == "__main__":
    main()
