"""Print the token ids of score labels as the model's own tokenizer sees them.

Usage: python label_token_ids.py MODEL_DIR WORD [WORD ...]
Prints one JSON object {"WORD": [ids...], ...} on stdout. Runs offline: the
tokenizer is read from MODEL_DIR and nothing is fetched.
"""

import json
import sys

from transformers import AutoTokenizer


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip())
    tokenizer = AutoTokenizer.from_pretrained(sys.argv[1], local_files_only=True)
    ids = {word: tokenizer.encode(word, add_special_tokens=False) for word in sys.argv[2:]}
    print(json.dumps(ids))


if __name__ == "__main__":
    main()
