"""The seed stages: mining documented functions from raw source, the filters (decontamination,
quality rules, type check, docstring judge), MinHash near-dedup, and the batch registry."""
