"""Long-format CSV files as users have them: any common delimiter, decimal commas, dates."""

from __future__ import annotations

import csv
import os
import re
import warnings

import pandas as pd

DELIMITERS = ",;\t|"
_SAMPLE_BYTES = 64 * 1024


def sniff(path: str) -> tuple[str, str]:
    """``(delimiter, decimal)`` of a CSV file, from its first 64 KiB.

    The delimiter is the one of ``, ; tab |`` that splits the sample's rows
    consistently (``csv.Sniffer``; a comma if none does). A semicolon-separated
    file whose fields hold numbers like ``89,8`` uses the decimal comma.
    """
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        sample = fh.read(_SAMPLE_BYTES)
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    decimal = "," if delimiter == ";" and re.search(r"(^|;)\s*-?\d+,\d+\s*(;|$)", sample, re.M) else "."
    return delimiter, decimal


def _looks_like_dates(series: pd.Series) -> pd.Series | None:
    """The column parsed as dates if every value parses, else None."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    text = series.dropna().astype(str)
    if text.empty or not text.str.contains(r"\d").all():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pd.to_datetime(series, errors="raise")
        except (ValueError, TypeError, OverflowError):
            return None


def read_long_csv(path: str, time_column: str) -> pd.DataFrame:
    """Reads a long CSV (delimiter sniffed); the time column is parsed as dates when every value is one.

    Raises:
      FileNotFoundError: if ``path`` is not a file.
      ValueError: if the file cannot be parsed as CSV.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file {path!r} not found")
    try:
        delimiter, decimal = sniff(path)
        df = pd.read_csv(path, sep=delimiter, decimal=decimal)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path!r} as CSV: {e}") from None
    if time_column in df.columns:
        parsed = _looks_like_dates(df[time_column])
        if parsed is not None:
            df[time_column] = parsed
    return df
