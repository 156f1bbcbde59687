"""Put the bundled offline model in a folder: `python -m flotilla.llm.fetch_model DIR`.

For images that must run offline (compose/build-images.sh puts it in the worker image's build
context). Downloads and verifies it once; later calls only check it. Prints the file's path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flotilla.llm._model import ensure_local_model
from flotilla.llm._settings import LlmSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flotilla.llm.fetch_model", description=__doc__)
    parser.add_argument("directory", type=Path, help="where the GGUF file goes")
    args = parser.parse_args(argv)
    path = ensure_local_model(LlmSettings(backend="local", model_dir=args.directory.resolve()))
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
