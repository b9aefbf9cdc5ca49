"""The partitioner and the chunk pool, over real files: chunks read back from the spill files
validate exactly like the whole extract, row numbers and files intact; spill files are
owner-only and removed; the pool's documents and fingerprints equal the whole extract's.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from customer_sync.adapters.readers import locate_tables, read_extract
from customer_sync.chunking.partitioner import (
    estimate_rows,
    partition_extract,
    partitions_for,
    read_chunk,
)
from customer_sync.chunking.pool import prepared_chunks
from customer_sync.chunking.spill_files import make_work_folder, remove_work_folder
from customer_sync.schemas.errors import InputError
from customer_sync.transforms.validate import combine_validations, validate_extract
from tests.chunk_support import assert_same_validation, documents_of
from tests.extract_factory import write_csv, write_files
from tests.test_chunked_validation import _account, _card, _customer, messy_rows


def _files(folder: Path) -> dict[str, str]:
    return {t: str(p) for t, p in locate_tables(str(folder)).items()}


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize(("partitions", "block_rows"), [(1, 100), (4, 3), (7, 5)])
def test_chunks_from_files_validate_like_the_whole_extract(
    tmp_path: Path, fmt: str, partitions: int, block_rows: int
) -> None:
    write_files(messy_rows(), tmp_path / "in", fmt)  # type: ignore[arg-type]
    files = _files(tmp_path / "in")
    whole = validate_extract(read_extract(tmp_path / "in"))
    work = make_work_folder(tmp_path / "state" / "work")
    extract = partition_extract(files, work, partitions, block_rows=block_rows)
    assert extract.rows_read == whole.rows_read
    parts = [validate_extract(*read_chunk(extract, k)) for k in range(partitions)]
    combined = combine_validations(parts)
    assert_same_validation(whole, combined)  # row numbers and file names included
    assert documents_of(combined) == documents_of(whole)
    remove_work_folder(work)
    assert not work.exists()


def test_spill_files_are_owner_only(tmp_path: Path) -> None:
    write_files(messy_rows(), tmp_path / "in", "csv")
    work = make_work_folder(tmp_path / "state" / "work")
    partition_extract(_files(tmp_path / "in"), work, 3, block_rows=4)
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    written = list(work.iterdir())
    assert written and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in written)
    # raw blocks, routing keys and routes are gone: only what the chunks are read from
    kinds = {p.name.split("-")[0] for p in written if p.suffix == ".arrow"}
    assert kinds == {"customers", "accounts", "cards"}
    assert not [p for p in written if p.name.endswith((".block.arrow", ".keys.arrow"))]


def test_the_work_folder_must_be_new(tmp_path: Path) -> None:
    make_work_folder(tmp_path / "work")
    with pytest.raises(FileExistsError):
        make_work_folder(tmp_path / "work")


def test_row_estimates(tmp_path: Path) -> None:
    header = ["a", "b"]
    assert estimate_rows(str(write_csv(tmp_path / "h.csv", header, []))) == 0
    assert estimate_rows(str(write_csv(tmp_path / "n.csv", header, [["1", "2"]] * 5))) == 5
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4")  # no break after the last row
    assert estimate_rows(str(tmp_path / "t.csv")) == 2
    (tmp_path / "e.csv").write_text("")
    assert estimate_rows(str(tmp_path / "e.csv")) == 0
    paths = write_files(messy_rows(), tmp_path / "pq", "parquet")
    assert estimate_rows(str(paths["customers"])) == len(messy_rows()["customers"])
    assert partitions_for(0, 10) == 1
    assert partitions_for(101, 10) == 11


@pytest.mark.parametrize("workers", [1, 2])
def test_prepared_chunks_give_the_whole_extracts_documents(tmp_path: Path, workers: int) -> None:
    write_files(messy_rows(), tmp_path / "in", "csv")
    whole = validate_extract(read_extract(tmp_path / "in"))
    work = tmp_path / "state" / "work"
    chunks = list(prepared_chunks(_files(tmp_path / "in"), work, 4, workers=workers))
    assert len(chunks) == 4
    documents = {
        cid: (doc, fingerprint)
        for chunk in chunks
        for cid, doc, fingerprint in zip(
            chunk.documents.customer_ids.to_pylist(),
            chunk.documents.documents.to_pylist(),
            chunk.fingerprints.to_pylist(),
            strict=True,
        )
    }
    assert documents == documents_of(whole)
    combined = combine_validations([c.validation for c in chunks])
    assert combined.summary() == whole.summary()
    assert not work.exists()


def test_a_bad_file_stops_the_chunks_and_leaves_no_spill(tmp_path: Path) -> None:
    write_files(messy_rows(), tmp_path / "in", "csv", drop_columns={"cards": ["last4"]})
    work = tmp_path / "state" / "work"
    with pytest.raises(InputError, match="last4"):
        list(prepared_chunks(_files(tmp_path / "in"), work, 3, workers=2))
    assert not work.exists()


@pytest.mark.usefixtures("prefect_harness")
def test_prepare_spools_the_same_plan_in_chunks_as_whole(tmp_path: Path) -> None:
    from customer_sync.adapters.spool import read_spool
    from customer_sync.flows.prepare import SourceSpec, chunk_layout, prepare
    from customer_sync.ledger.sqlite import SqliteLedger

    rows = messy_rows()
    for n in range(20):  # and plenty of valid customers, some with joint accounts
        rows["customers"].append(_customer(f"V{n:02d}"))
        holders = f"V{n:02d}|V{(n + 7) % 20:02d}" if n % 3 == 0 else None
        rows["accounts"].append(_account(f"VA{n:02d}", f"V{n:02d}", holders))
        rows["cards"].append(_card(f"VA{n:02d}", f"V{n:02d}", "1234", "412345", "4"))
    write_files(rows, tmp_path / "in", "csv")
    spooled, totals, rejects, seen = [], [], [], []
    for name, chunk_customers in (("whole", 1_000), ("chunked", 4)):
        run = tmp_path / name / "runs" / "r1"
        with SqliteLedger.open(tmp_path / name) as ledger:
            spec = SourceSpec(str(tmp_path / "in"))
            preparation = prepare(
                spec,
                ledger,
                run / "spool.arrow",
                run / "rejects.csv",
                full_refresh=False,
                mode="sync",
                layout=chunk_layout(
                    spec,
                    chunk_customers=chunk_customers,
                    whole_customers=0 if name == "chunked" else 1_000,
                ),
            )
        rows = [r for b in read_spool(run / "spool.arrow") for r in b.to_pylist()]
        spooled.append(sorted(rows, key=lambda r: r["customer_id"]))
        preparation.held_back = []  # frames: compared through the counts and rejects
        preparation.rejects_path = None
        # ids read, compared as a multiset: chunks read them in another order than whole
        seen.append(sorted(i for ids in preparation.seen_ids for i in ids.to_pylist()))
        preparation.seen_ids = []
        totals.append(preparation)
        rejects.append(pd.read_csv(run / "rejects.csv", dtype=str).sort_values(["table", "row"]))
        assert not (run / "chunks").exists()
    assert spooled[0] == spooled[1] and len(spooled[0]) > 20
    assert totals[0] == totals[1]
    assert seen[0] == seen[1] and len(seen[0]) > 20
    pd.testing.assert_frame_equal(
        rejects[0].reset_index(drop=True), rejects[1].reset_index(drop=True)
    )


def test_workers_do_not_run_an_unguarded_calling_script_again(tmp_path: Path) -> None:
    # spawn re-imports the caller's main script in each worker, unless told otherwise: a
    # script without `if __name__ == "__main__":` would run again there (another sync!)
    write_files(messy_rows(), tmp_path / "in", "csv")
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from pathlib import Path\n"
        "from customer_sync.adapters.readers import locate_tables\n"
        "from customer_sync.chunking.pool import prepared_chunks\n"
        "print('script ran', flush=True)\n"
        f"files = {{t: str(p) for t, p in locate_tables({str(tmp_path / 'in')!r}).items()}}\n"
        f"chunks = list(prepared_chunks(files, Path({str(tmp_path / 'work')!r}), 3, workers=2))\n"
        "print('customers', sum(c.validation.customers_read for c in chunks))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("script ran") == 1
    assert f"customers {len(messy_rows()['customers'])}" in done.stdout


def test_a_table_with_no_rows_is_split_too(tmp_path: Path) -> None:
    rows = messy_rows()
    rows["cards"] = []
    write_files(rows, tmp_path / "in", "csv")
    whole = validate_extract(read_extract(tmp_path / "in"))
    chunks = list(prepared_chunks(_files(tmp_path / "in"), tmp_path / "work", 3, workers=1))
    assert combine_validations([c.validation for c in chunks]).summary() == whole.summary()


def test_chunks_without_a_valid_customer_come_back_empty_from_the_workers(
    tmp_path: Path,
) -> None:
    rows: dict[str, list[dict[str, str | None]]] = {
        "customers": [_customer(f"C{n}", country="Narnia") for n in range(8)],
        "accounts": [],
        "cards": [],
    }
    write_files(rows, tmp_path / "in", "csv")
    chunks = list(prepared_chunks(_files(tmp_path / "in"), tmp_path / "work", 2, workers=2))
    assert [len(c.documents) for c in chunks] == [0, 0]
    assert [len(c.fingerprints) for c in chunks] == [0, 0]
    assert sum(c.validation.customers_held_back for c in chunks) == 8
    assert not (tmp_path / "work").exists()
