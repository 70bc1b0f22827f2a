"""Results as a person wants them: result tables (JSON), training curves, pictures, one static HTML page.

Any stage that evaluates something writes ``<dir>/results/<name>.json`` with
``{"title", "protocol", "columns", "rows", "images", "notes"}`` (see ``results.write_result``);
``drivewm report DIR...`` turns directories of such results and training runs into one
self-contained HTML page.
"""

from drivewm.report.results import environment_info, read_results, write_result

__all__ = ["environment_info", "read_results", "write_result"]
