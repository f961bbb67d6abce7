"""What hostile input files cost the ingest: peak memory and time, each in its own process.

Usage: .venv/bin/python benchmarks/hostile_ingest.py [--data ../shared/data] [--scale 30]
Cases: the 5 KB workbook bomb (sheet PEDE2030 ending at XFD1048576) beside a good CSV; 200 MB
of commas refused by the default byte limit; the same file read in full with the limit raised
to 300 MB; the real CSVs copied ``--scale`` times (the baseline). Each ingest (read, harmonise,
load; no Prefect) runs in a child process, killed if it passes 1.5 GB. Peak memory is the
child's own high-water mark (``VmHWM``, sampled every 50 ms). Results: benchmarks/results/hostile_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import machine, save
from benchmarks.pipeline import synthesise
from passos.settings import PROJECT_ROOT

BOUND = 1_500_000_000
HEADER = "RA,Fase,Idade,Gênero,IAA,IEG,IPS,IDA,IPV,IAN,Defasagem,Fase Ideal"
ROW = "RA-1,FASE 2,11,Feminino,8.5,7,6,5.5,7.1,5,-1,Fase 3 (7º e 8º ano)"
INGEST = """
import json, sys, time
from pathlib import Path
from warehouse import loader
from warehouse.connection import connect
from warehouse.sources import discover
started = time.monotonic()
with connect() as con:
    results = loader.ingest(con, "bench", discover([Path(sys.argv[1])]))
print(json.dumps({"ingest_s": round(time.monotonic() - started, 2),
                  "results": [[r.source, r.status, r.rows_loaded, r.note[:100]] for r in results]}))
"""


def run(folder: Path, home: Path, **env: str) -> dict[str, Any]:
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-c", INGEST, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PASSOS_HOME": str(home), **env},
    )
    killed: list[int] = []
    high = [0]

    def guard() -> None:
        while True:
            try:
                status = Path(f"/proc/{child.pid}/status").read_text().splitlines()
            except OSError:
                return
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in status if line.startswith("Vm")}
            high[0] = max(high[0], fields.get("VmHWM", 0))
            if fields.get("VmRSS", 0) > BOUND:
                killed.append(fields["VmRSS"])
                os.kill(child.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    threading.Thread(target=guard, daemon=True).start()
    assert child.stdout is not None
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    result: dict[str, Any] = {
        "exit": child.returncode,
        "killed_past_1_5_gb": bool(killed),
        "peak_rss_mib": round(high[0] / 2**20),  # the child's own high-water mark (VmHWM, sampled)
        "ru_maxrss_mib": round(usage.ru_maxrss / 1024),  # an upper bound: includes this process at fork
        "wall_s": round(time.monotonic() - started, 1),
    }
    if out:
        result |= json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data")
    parser.add_argument("--scale", type=int, default=30)
    args = parser.parse_args()
    import openpyxl

    cases: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="passos-hostile-") as tmp:
        root = Path(tmp)
        bomb = root / "bomb"
        bomb.mkdir()
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = "PEDE2030"
        sheet.append(HEADER.split(","))
        sheet.append(ROW.split(","))
        sheet["XFD1048576"] = "x"
        book.save(bomb / "bomb.xlsx")
        (bomb / "pede_2031.csv").write_text(f"{HEADER}\n{ROW}\n", encoding="utf-8")
        cases["workbook_bomb"] = run(bomb, root / "h1") | {"bytes": (bomb / "bomb.xlsx").stat().st_size}

        commas = root / "commas"
        commas.mkdir()
        with (commas / "pede_2030.csv").open("w", encoding="utf-8") as handle:
            handle.write(HEADER + "\n")
            block = ("," * 11 + "\n") * 100_000  # 1.2 MB at a time: this process stays small
            for _ in range(200_000_000 // len(block)):
                handle.write(block)
        cases["commas_200mb_default_limit"] = run(commas, root / "h2")
        cases["commas_200mb_limit_raised"] = run(commas, root / "h3", PASSOS_SOURCE_MAX_BYTES="300000000")
        (commas / "pede_2030.csv").unlink()

        scaled = root / "scaled"
        rows = synthesise(args.data, scaled, args.scale)
        cases[f"real_csvs_x{args.scale}"] = run(scaled, root / "h4") | {"rows": rows}
    save("hostile_ingest", {"machine": machine(), "load_average": os.getloadavg(), "cases": cases})


if __name__ == "__main__":
    main()
