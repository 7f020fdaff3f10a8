"""HTML report pages (`mmselect analyze`, `select --report`, `mmselect compare`): numbers (stats), charts (plots),
record cards (cards), page markup (html), what a page draws from (pool), its sections (sections), and the pages end
to end (jobs)."""
