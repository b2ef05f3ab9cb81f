//! Go's table layouts, reproduced because users and scripts parse Consul's output:
//! `columnize` (members, catalog nodes) and `text/tabwriter` (kv get -detailed,
//! catalog services -tags). Widths count characters, not bytes, as Go does for UTF-8.

/// Like `columnize.Format` with Consul's settings: cells joined by two spaces, every
/// column but a row's last padded to the column's widest cell, cells trimmed.
pub(crate) fn columnize(rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<&str>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| cell.trim()).collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(max) => *max = (*max).max(w),
                None => widths.push(w),
            }
        }
    }
    let mut out = String::new();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push('\n');
    }
    out.pop();
    out
}

/// Like Go's `tabwriter.NewWriter(w, 0, _, padding, ' ', 0)`: tab-terminated cells are
/// aligned per column block (consecutive lines having that column), each column as wide
/// as its widest cell plus `padding`; a line's last cell is never padded.
pub(crate) fn tabwrite(text: &str, padding: usize) -> String {
    tabwrite_min(text, 0, padding)
}

/// [`tabwrite`] with Go's `minwidth`: no column narrower than `minwidth`,
/// padding included.
pub(crate) fn tabwrite_min(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len()]).collect();
    layout(&lines, &mut widths, 0, lines.len(), 0, (minwidth, padding));
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let pad = widths[i][j].saturating_sub(cell.chars().count());
                out.push_str(&" ".repeat(pad));
            }
        }
    }
    out
}

/// Go's `tabwriter.format`: find the blocks of consecutive lines that have a
/// terminated cell in `column`, size the column per block, then recurse into the
/// next column within each block.
fn layout(
    lines: &[Vec<&str>],
    widths: &mut [Vec<usize>],
    start: usize,
    end: usize,
    column: usize,
    (minwidth, padding): (usize, usize),
) {
    let has_column = |line: &Vec<&str>| column + 1 < line.len();
    let mut this = start;
    while this < end {
        if !has_column(&lines[this]) {
            this += 1;
            continue;
        }
        let block = this;
        let mut width = minwidth;
        while this < end && has_column(&lines[this]) {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        for row in widths.iter_mut().take(this).skip(block) {
            row[column] = width;
        }
        layout(lines, widths, block, this, column + 1, (minwidth, padding));
    }
}

/// `key=value` pairs sorted by key, joined with `sep` (Consul's `mapToKV`).
pub(crate) fn map_to_kv<'a>(
    map: impl IntoIterator<Item = (&'a String, &'a String)>,
    sep: &str,
) -> String {
    let mut pairs: Vec<_> = map.into_iter().collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(sep)
}

/// Go's `json.MarshalIndent(v, "", indent)`: one level of `indent` per nesting.
pub(crate) fn marshal_indent(
    value: &impl serde::Serialize,
    indent: &[u8],
) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`marshal_indent`] with `indent`, or `null` if `value` cannot be rendered
/// (as Go prints a value it failed to marshal), for commands that print JSON.
pub(crate) fn indented(value: &impl serde::Serialize, indent: &[u8]) -> String {
    marshal_indent(value, indent).unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| (*c).to_owned()).collect()
    }

    #[test]
    fn columnize_pads_all_but_last_column() {
        let out = columnize(&[
            row(&["Node", "ID", "Address"]),
            row(&["n1", "abcdef", "10.0.0.1"]),
        ]);
        assert_eq!(out, "Node  ID      Address\nn1    abcdef  10.0.0.1");
    }

    #[test]
    fn columnize_keeps_empty_cells_as_padding() {
        let out = columnize(&[row(&["a", "bb", "c"]), row(&["x", "", ""])]);
        assert_eq!(out, "a  bb  c\nx      ");
    }

    #[test]
    fn tabwriter_detailed_kv_layout() {
        let text = "CreateIndex\t5\nFlags\t0\nKey\tfoo\nSession\t-\nValue\tbar";
        assert_eq!(
            tabwrite(text, 6),
            "CreateIndex      5\nFlags            0\nKey              foo\nSession          -\nValue            bar"
        );
    }

    #[test]
    fn tabwriter_blocks_are_independent() {
        // The tab-less middle line ends the first block; widths restart after it.
        let text = "a\t1\nplain\nlonger\t2\n";
        assert_eq!(tabwrite(text, 2), "a  1\nplain\nlonger  2\n");
    }

    #[test]
    fn map_to_kv_sorts() {
        let map: std::collections::BTreeMap<String, String> =
            [("b".into(), "2".into()), ("a".into(), "1".into())].into();
        assert_eq!(map_to_kv(&map, ", "), "a=1, b=2");
    }
}
