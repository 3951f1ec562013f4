"Plain-text tables for the benchmark scripts (imported as `from _table import print_table` by scripts in this folder)."


def print_table(head:list, rows:list):
    "Print `rows` under `head`, columns padded to their widest cell, with a dashed rule."
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: '  '.join(str(c).ljust(w[i]) for i, c in enumerate(r))
    print(line(head)); print('  '.join('-' * x for x in w))
    for r in rows: print(line(r))
