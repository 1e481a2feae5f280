#!/usr/bin/env python3
"""Checks the Swift sources' shape: lines <= 120 characters, functions (func, init, deinit, subscript,
counted from the declaration to its closing brace) <= 80 lines, files <= 500 lines. Prints FILE:LINE: problem
and exits 1 if any.   python3 launch/check-swift.py [PATH...]   (default: Sources)"""
import re, sys, pathlib

MAX_LINE, MAX_FUNC, MAX_FILE = 120, 80, 500
DECL = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|static|override|'
                  r'mutating|nonmutating|final|class|@inlinable|@usableFromInline|@discardableResult)\s+)*'
                  r'(func\s+[^\s(<]+|init[?!]?|deinit|subscript)\b')

def strip(line, state):
    """Removes string literals and comments from a line (state: inside a multi-line string)."""
    out, i, n = [], 0, len(line)
    while i < n:
        if state['ml']:
            j = line.find('"""', i)
            if j < 0: return ''.join(out)
            state['ml'] = False; i = j + 3; continue
        if line.startswith('//', i): break
        if line.startswith('"""', i): state['ml'] = True; i += 3; continue
        c = line[i]
        if c == '"':
            i += 1; depth = 0
            while i < n:
                if line[i] == '\\' and i + 1 < n and line[i + 1] == '(':
                    depth += 1; i += 2; continue
                if depth and line[i] == ')': depth -= 1
                elif line[i] == '\\': i += 1
                elif line[i] == '"' and not depth: break
                i += 1
            i += 1; continue
        out.append(c); i += 1
    return ''.join(out)

def check(path):
    problems = []
    lines = path.read_text(encoding='utf-8').split('\n')
    if len(lines) > MAX_FILE: problems.append(f'{path}: {len(lines)} lines (max {MAX_FILE})')
    state = {'ml': False}
    stack = []  # (start line, brace depth at start, name)
    depth = 0; pending = None
    for no, line in enumerate(lines, 1):
        if len(line) > MAX_LINE: problems.append(f'{path}:{no}: {len(line)} characters (max {MAX_LINE})')
        code = strip(line, state)
        m = DECL.match(code)
        if m and pending is None: pending = (no, m.group(1))
        for ch in code:
            if ch == '{':
                if pending is not None:
                    stack.append((pending[0], depth, pending[1])); pending = None
                depth += 1
            elif ch == '}':
                depth -= 1
                if stack and stack[-1][1] == depth:
                    start, _, name = stack.pop()
                    if no - start + 1 > MAX_FUNC:
                        problems.append(f'{path}:{start}: {name} is {no - start + 1} lines (max {MAX_FUNC})')
    return problems

paths = [pathlib.Path(p) for a in (sys.argv[1:] or ['Sources']) for p in
         (pathlib.Path(a).rglob('*.swift') if pathlib.Path(a).is_dir() else [pathlib.Path(a)])]
problems = [p for path in sorted(paths) for p in check(path)]
if problems:
    print('\n'.join(problems))
print(f'check-swift: {len(paths)} files, {len(problems)} problem(s)')
sys.exit(1 if problems else 0)
