"""Write a jsonl list without its transcripts: what pretraining on untranscribed audio reads.

    python local/audio_only.py data/train/data.list data/train/audio.list
"""
import sys

from chunkformer.data.manifest import FIELDS, read_manifest, write_manifest

if __name__ == "__main__":
    rows = read_manifest(sys.argv[1])
    for row in rows:
        row.text = None
        for name in FIELDS["text"]:
            row.labels.pop(name, None)
    write_manifest(sys.argv[2], rows)
    print(f"{len(rows)} utterances without transcripts → {sys.argv[2]}")
