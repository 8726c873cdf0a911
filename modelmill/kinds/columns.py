"""Column and file names of the data folder's layout, shared by every kind and by `modelmill.data`."""

ID = "item_id"
LABEL = "label"
SOURCE = "source"
ITEMS_FILE = "items.parquet"
LABELS_FILE = "labels.parquet"
SCHEMA_FILE = "dataset.json"
SCHEMA_VERSION = 2
RESERVED = (ID, LABEL)
