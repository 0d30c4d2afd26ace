"""Propose labels for calls: clusters of pooled embeddings + rules → CSV for annotators.

    python -m chunkformer.bin.prelabel --index exp/emb/index.tsv --k 8 \
        --labeled data/labeled.list --label_field intent --rules conf/prelabel_rules.yaml \
        --transcripts exp/decode/text --predictions exp/heads/eval/predictions.tsv \
        --output exp/prelabel.csv

Columns: key, cluster, cluster_confidence (distance-based, 0-1), nearest_labeled
(``key:label:cosine``; …), proposed_label, confidence, reason. ``--labeled`` is any list whose
rows carry ``--label_field``; ``--transcripts`` a Kaldi text file (``recognize``'s output);
``--predictions`` ``evaluate_heads``' predictions.tsv (head outputs the rules can test);
``--intents`` a TSV ``<key>\t<intent> <intent> …`` of segment intents in time order.
"""
import argparse
import sys
from collections import defaultdict

from chunkformer.analytics.prelabel import prelabel, read_pooled, write_csv
from chunkformer.analytics.rules import RuleError, RuleSet
from chunkformer.bin.common import tool_main, user_error_message
from chunkformer.data.dataset import row_label
from chunkformer.data.manifest import ManifestError, read_manifest, read_text


def get_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--index", required=True, help="extract_embeddings' index.tsv")
    p.add_argument("--k", type=int, required=True, help="number of clusters")
    p.add_argument("--method", default="kmeans", choices=("kmeans", "agglomerative"))
    p.add_argument("--rules", default=None, help="rules YAML (without: cluster majority only)")
    p.add_argument("--labeled", default=None)
    p.add_argument("--label_field", default="label")
    p.add_argument("--transcripts", default=None)
    p.add_argument("--predictions", default=None)
    p.add_argument("--intents", default=None)
    p.add_argument("--nearest", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", required=True)
    return p


def read_predictions(path):
    heads = defaultdict(dict)
    for n, line in enumerate(open(path, encoding="utf-8"), 1):
        f = line.rstrip("\n").split("\t")
        if n == 1 and f[0] == "key":
            continue
        if len(f) != 4:
            sys.exit(f"error: {path}:{n}: expected key, head, predicted, probability")
        heads[f[0]][f[1]] = (f[2], float(f[3]))
    return heads


@tool_main
def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        pooled = read_pooled(args.index)
        rules = RuleSet.load(args.rules) if args.rules else RuleSet([])
        transcripts = read_text(args.transcripts) if args.transcripts else None
    except (ValueError, FileNotFoundError, ManifestError) as e:
        sys.exit(f"error: {user_error_message(e)}")
    labeled = None
    if args.labeled:
        labeled = {r.key: str(row_label(r, args.label_field))
                   for r in read_manifest(args.labeled)
                   if row_label(r, args.label_field) is not None}
    heads = read_predictions(args.predictions) if args.predictions else None
    intents = None
    if args.intents:
        intents = {line.split("\t")[0]: line.rstrip("\n").split("\t")[1].split()
                   for line in open(args.intents, encoding="utf-8") if "\t" in line}
    try:
        rows = prelabel(pooled, rules, args.k, args.method, labeled, transcripts, heads,
                        intents, args.nearest, args.seed)
    except (ValueError, RuleError) as e:
        sys.exit(f"error: {e}")
    write_csv(rows, args.output)
    proposed = sum(1 for r in rows if r["proposed_label"])
    print(f"{len(rows)} calls in {args.k} clusters, {proposed} with a proposed label → "
          f"{args.output}")


if __name__ == "__main__":
    main()
