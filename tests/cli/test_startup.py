"""The commands that never touch a network (estimate, profiles) start without torch:
importing it costs seconds, and an architect runs `ffneuro estimate` in loops."""

import subprocess
import sys


def test_the_cli_and_an_estimate_do_not_import_torch():
    code = ("import sys\n"
            "from ffneuro.cli import main\n"
            "sys.argv = ['ffneuro', 'estimate', '--profile', 'loihi-like', '--layers', '784,200,200']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "fits: yes" in out and out.strip().endswith("NO-TORCH")
