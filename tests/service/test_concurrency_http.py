"""Many client processes against one server: version numbers stay gapless, the chain verifies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = """
import sys, pathlib
from registry.remote import RemoteRegistry
url, token, tag, n, folder = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), pathlib.Path(sys.argv[5])
client = RemoteRegistry(url, token=token)
for i in range(n):
    path = folder / f"{tag}-{i}.bin"
    path.write_bytes(f"{tag}-{i}".encode())
    print(client.register("churn", path).version, flush=True)
"""


def test_concurrent_registrations_through_the_server_are_gapless(
    registry_server: Any, tmp_path: Path
) -> None:
    h = registry_server
    token = h.token("pipeline", name="ci")
    writers, each = 4, 5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, h.url, token, f"w{w}", str(each), str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(writers)
    ]
    numbers: list[int] = []
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
        numbers += [int(line) for line in out.split()]
    assert sorted(numbers) == list(range(1, writers * each + 1))
    client = h.client()
    assert [v.version for v in client.versions("churn")] == list(range(writers * each, 0, -1))
    assert client.verify_audit().ok
