//! Plane-level stats (a device's type and peaks), which are not events and
//! so never reach the event stream. Lines and events are skipped unread.

use crate::Error;
use crate::space;
use crate::wire::Cursor;

/// The value of one plane stat.
#[derive(Clone, Debug, PartialEq)]
pub enum PlaneStatValue {
    Number(f64),
    Text(String),
}

/// The stats of one plane, named through the plane's stat metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct PlaneStats {
    /// For example `/device:TPU:0`.
    pub plane: String,
    /// In file order; stats without a value or with a bytes value are left out.
    pub stats: Vec<(String, PlaneStatValue)>,
}

impl PlaneStats {
    /// The number named `key`, if any.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.stats.iter().find_map(|(k, v)| match v {
            PlaneStatValue::Number(n) if k == key => Some(*n),
            _ => None,
        })
    }

    /// The text named `key`, if any.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.stats.iter().find_map(|(k, v)| match v {
            PlaneStatValue::Text(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

/// Reads the stats of every plane, in file order.
pub fn plane_stats(bytes: &[u8]) -> Result<Vec<PlaneStats>, Error> {
    let space = space::index_space(bytes)?;
    let mut res = Vec::new();
    for range in space::repeated(&space, space::whole(&space), "XSpace", 1) {
        let range = range?;
        let mut cursor = space.nested(range, "XPlane");
        let mut name = "";
        let mut names: Vec<(u64, &str)> = Vec::new();
        let mut raw: Vec<(u64, PlaneStatValue)> = Vec::new();
        while let Some(field) = cursor.next_field()? {
            match field.number {
                2 => name = cursor.expect_str(&field)?,
                5 => names.push(stat_name(&space, cursor.expect_len(&field)?)?),
                6 => {
                    if let Some(stat) = stat(&space, cursor.expect_len(&field)?, &names)? {
                        raw.push(stat);
                    }
                }
                _ => {}
            }
        }
        let stats = raw
            .into_iter()
            .map(|(id, value)| {
                let key = names
                    .iter()
                    .rev()
                    .find(|(k, _)| *k == id)
                    .map_or("", |(_, n)| n);
                (key.to_owned(), value)
            })
            .collect();
        res.push(PlaneStats {
            plane: name.to_owned(),
            stats,
        });
    }
    Ok(res)
}

/// A `stat_metadata` map entry: its id and name.
fn stat_name<'a>(space: &Cursor<'a>, range: (usize, usize)) -> Result<(u64, &'a str), Error> {
    let mut entry = space.nested(range, "stat_metadata entry");
    let (mut key, mut name) = (0, "");
    while let Some(field) = entry.next_field()? {
        match field.number {
            1 => key = entry.expect_varint(&field)?,
            2 => {
                let mut meta = space.nested(entry.expect_len(&field)?, "XStatMetadata");
                while let Some(field) = meta.next_field()? {
                    if field.number == 2 {
                        name = meta.expect_str(&field)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok((key, name))
}

/// One `XStat`: its metadata id and value. A `ref_value` is resolved through
/// the names seen so far.
fn stat(
    space: &Cursor<'_>,
    range: (usize, usize),
    names: &[(u64, &str)],
) -> Result<Option<(u64, PlaneStatValue)>, Error> {
    let mut cursor = space.nested(range, "XStat");
    let (mut id, mut value) = (0, None);
    while let Some(field) = cursor.next_field()? {
        value = match field.number {
            1 => {
                id = cursor.expect_varint(&field)?;
                continue;
            }
            2 => Some(PlaneStatValue::Number(f64::from_bits(
                cursor.expect_fixed64(&field)?,
            ))),
            3 => Some(PlaneStatValue::Number(cursor.expect_varint(&field)? as f64)),
            4 => Some(PlaneStatValue::Number(
                cursor.expect_varint(&field)? as i64 as f64
            )),
            5 => Some(PlaneStatValue::Text(cursor.expect_str(&field)?.to_owned())),
            6 => {
                cursor.expect_len(&field)?;
                None
            }
            7 => {
                let target = cursor.expect_varint(&field)?;
                let text = names
                    .iter()
                    .find(|(k, _)| *k == target)
                    .map_or("", |it| it.1);
                Some(PlaneStatValue::Text(text.to_owned()))
            }
            _ => continue,
        };
    }
    Ok(value.map(|it| (id, it)))
}
