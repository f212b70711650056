//! Plain aligned tables, and the small formatting helpers they use.

use super::color::visible_width;

/// Formats rows under a header, columns padded to their widest cell and
/// separated by two spaces; the last column is not padded. Widths ignore
/// colour escapes.
/// `key  value` lines, the values aligned (as `bento inspect` shows one
/// thing): a table without its header row.
pub(super) fn key_values(rows: Vec<(&str, String)>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|(k, v)| vec![k.to_string(), v])
        .collect();
    let table = render(&["", ""], &rows);
    table
        .split_once('\n')
        .map_or(table.clone(), |(_, rest)| rest.to_string())
}

pub(super) fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| visible_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(visible_width(cell));
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                line.push_str(cell);
                let pad = width.saturating_sub(visible_width(cell)) + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `1536` → `1.5 KiB`.
pub(super) fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = render(
            &["A", "LONGER", "C"],
            &[vec!["xxxx".into(), "y".into(), "z".into()]],
        );
        assert_eq!(t, "A     LONGER  C\nxxxx  y       z\n");
    }

    #[test]
    fn colour_escapes_do_not_count() {
        let green = "\x1b[32mok\x1b[0m".to_string();
        let t = render(
            &["S", "X"],
            &[
                vec![green.clone(), "1".into()],
                vec!["long".into(), "2".into()],
            ],
        );
        assert_eq!(t, format!("S     X\n{green}    1\nlong  2\n"));
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes(12), "12 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
    }
}
