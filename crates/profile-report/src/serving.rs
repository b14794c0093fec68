//! The serving metrics of a run folder: the per-request records the run
//! metadata names, read and summed up by `serving-workload`.

use std::path::{Component, Path};

use serving_workload::RequestRecord;
use session_report::{RunMetadata, ServingMetadata};

use crate::export::Requests;

use crate::Error;

/// The requests of the run at `input`, when its metadata describes a
/// serving load. The records file must be a plain relative path inside the
/// run folder.
pub(crate) fn load_requests(
    input: &Path,
    metadata: &RunMetadata,
) -> Result<Option<Requests>, Error> {
    let Some(serving) = &metadata.serving else {
        return Ok(None);
    };
    Ok(Some(Requests {
        records: read_records(input, serving)?,
        serving: serving.clone(),
    }))
}

/// The per-request records `serving` names in the run folder `input`.
fn read_records(input: &Path, serving: &ServingMetadata) -> Result<Vec<RequestRecord>, Error> {
    let name = Path::new(&serving.records);
    let plain = name.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain || input.is_file() {
        return Err(Error::Records {
            path: input.join(name),
            detail: "the run metadata names records outside the run folder".to_owned(),
        });
    }
    let path = input.join(name);
    let read = |source| Error::Read {
        path: path.clone(),
        source,
    };
    // Line by line: a session of many requests has a file of hundreds of
    // MB, which is never held whole.
    let file = std::fs::File::open(&path).map_err(read)?;
    // The list is made at its length, counted first: grown, it would hold
    // up to twice the records' room, and both copies while it grows.
    let mut records = Vec::with_capacity(count_lines(&file).map_err(read)?);
    for (idx, line) in std::io::BufRead::lines(std::io::BufReader::new(file)).enumerate() {
        let line = line.map_err(read)?;
        let record =
            serving_workload::record::parse_record_line(&line, idx + 1).map_err(|err| {
                Error::Records {
                    path: path.clone(),
                    detail: err.to_string(),
                }
            })?;
        records.extend(record);
    }
    Ok(records)
}

/// The lines of `file` (its newlines, and one more when the last line has
/// none), read from its start; the file is left at its start.
fn count_lines(mut file: &std::fs::File) -> std::io::Result<usize> {
    use std::io::{Read, Seek};
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0, b'\n');
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|b| **b == b'\n').count();
        last = buf[n - 1];
    }
    file.rewind()?;
    Ok(lines + usize::from(last != b'\n'))
}
