"""Canonical events: the schema, its checks and its Parquet store."""

from .errors import BadInputError, BadRows, InputError, Problems, read_json
from .schema import ASK, BID, COLUMNS, NO_ORDER, SCHEMA, EventDay, Instrument, Kind, empty_table
from .store import atomic_path, copy_day, day_path, list_days, read_day, table_from_columns, write_day, write_day_file
from .validate import check_events

__all__ = [
    "ASK", "BID", "COLUMNS", "NO_ORDER", "SCHEMA", "BadInputError", "BadRows", "EventDay", "InputError", "Instrument",
    "Kind", "Problems", "atomic_path", "check_events", "copy_day", "day_path", "empty_table", "list_days", "read_day",
    "read_json", "table_from_columns", "write_day", "write_day_file",
]
