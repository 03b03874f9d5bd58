import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from datamodules import native_stderr
from datamodules.native_stderr import native_reason, native_stderr_captured

MODULE = Path(native_stderr.__file__)


def test_native_writes_are_captured_while_python_stderr_reaches_the_terminal():
    """On a real fd 2 (a subprocess, not pytest's capture): what C code writes to fd 2 is
    captured; ``print(..., file=sys.stderr)`` inside the block still reaches fd 2."""
    script = textwrap.dedent(f"""
        import importlib.util, json, os, sys
        spec = importlib.util.spec_from_file_location("native_stderr", {str(MODULE)!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with module.native_stderr_captured() as capture:
            os.write(2, b"[11:04:28] /src/video/video_reader.cc:83: ERROR opening: x.mp4, Invalid data\\n")
            first = capture.new_text()
            print("progress bar", file=sys.stderr)
            os.write(2, b"second\\n")
        print(json.dumps([first, capture.text]))
        os.write(2, b"after\\n")
    """)
    result = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60)
    assert result.stderr == "progress bar\nafter\n"
    first, everything = json.loads(result.stdout)
    assert "video_reader.cc:83" in first and "second" not in first and "second" in everything


def test_fd2_is_restored_after_an_error_and_nesting_is_refused():
    before = os.fstat(2)
    with pytest.raises(ValueError, match="inside"), native_stderr_captured():
        with pytest.raises(RuntimeError, match="already active"), native_stderr_captured():
            pass
        raise ValueError("inside")
    after = os.fstat(2)
    assert (before.st_dev, before.st_ino) == (after.st_dev, after.st_ino)


def test_native_reason_drops_the_log_prefixes():
    text = ("[mov,mp4,m4a,3gp,3g2,mj2 @ 0x560c3850bcc0] moov atom not found\n"
            "[11:04:28] /github/workspace/src/video/video_reader.cc:83: ERROR opening: bad.mp4, Invalid data\n"
            "[11:04:28] /github/workspace/src/video/video_reader.cc:83: ERROR opening: bad.mp4, Invalid data\n")
    assert native_reason(text) == "moov atom not found; ERROR opening: bad.mp4, Invalid data"
    assert native_reason(text, lines=1) == "ERROR opening: bad.mp4, Invalid data"
    assert native_reason("\n  \n") == ""
