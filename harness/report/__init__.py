"""Reports: saved run data -> tidy DataFrames -> figures -> HTML/Markdown/JSON; comparisons."""
