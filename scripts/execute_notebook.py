"""Execute notebooks/explore.ipynb top to bottom and store it with its outputs.

The kernel is this interpreter (a kernelspec installed into a temporary prefix), started in
the repository root; Prefect gets a private, temporary ``PREFECT_HOME`` (the flow starts a
temporary local server). The stored notebook keeps a generic ``python3`` kernelspec.
``tests/test_notebook.py`` checks the stored outputs for card data and executes it again.

    uv run --locked python scripts/execute_notebook.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "explore.ipynb"
KERNEL_NAME = "customer-sync-notebook"


def main() -> None:
    import nbformat
    from ipykernel.kernelspec import install
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="customer-sync-nb-") as scratch:
        prefix = Path(scratch) / "jupyter-prefix"
        install(kernel_name=KERNEL_NAME, prefix=str(prefix))
        os.environ["JUPYTER_PATH"] = str(prefix / "share" / "jupyter")
        os.environ["JUPYTER_RUNTIME_DIR"] = str(Path(scratch) / "runtime")
        os.environ["IPYTHONDIR"] = str(Path(scratch) / "ipython")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTOMER_SYNC_")}
        env["PREFECT_HOME"] = str(Path(scratch) / "prefect")
        env.pop("PREFECT_API_URL", None)
        env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")  # loaded machine
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        kernelspec = dict(notebook.metadata.get("kernelspec", {}))
        client = NotebookClient(
            notebook,
            kernel_name=KERNEL_NAME,
            timeout=300,
            startup_timeout=120,
            resources={"metadata": {"path": str(REPO)}},
        )
        client.execute(env=env)
        if kernelspec:
            notebook.metadata["kernelspec"] = kernelspec
        nbformat.write(notebook, NOTEBOOK)
    print(f"executed and stored {NOTEBOOK.relative_to(REPO)} with {sys.executable}")


if __name__ == "__main__":
    main()
