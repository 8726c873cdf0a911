"""Human labels from Label Studio: parse exports, resolve votes, merge, and export tasks back."""

from modelmill.labels.consensus import (
    STRATEGIES,
    DawidSkene,
    MajorityVote,
    Resolution,
    resolve,
    strategy_named,
)
from modelmill.labels.labelstudio import ParsedExport, RowProblem, read_export
from modelmill.labels.merge import (
    EXPORTS_DIR,
    LEDGER_FILE,
    ImportReport,
    archived_hashes,
    file_sha256,
    import_exports,
    load_ledger,
)
from modelmill.labels.tasks_export import (
    build_tasks,
    labeling_config,
    select_uncertain,
    uncertainty,
    write_labeling_config,
    write_tasks,
)

__all__ = [
    "STRATEGIES",
    "DawidSkene",
    "MajorityVote",
    "Resolution",
    "resolve",
    "strategy_named",
    "ParsedExport",
    "RowProblem",
    "read_export",
    "EXPORTS_DIR",
    "LEDGER_FILE",
    "ImportReport",
    "archived_hashes",
    "file_sha256",
    "import_exports",
    "load_ledger",
    "build_tasks",
    "labeling_config",
    "select_uncertain",
    "uncertainty",
    "write_labeling_config",
    "write_tasks",
]
