//! The serving metrics of a run folder: the per-request records the run
//! metadata names, read and summed up by `serving-workload`.

use std::path::{Component, Path};

use serving_workload::RequestRecord;
use serving_workload::metrics::ServingTally;
use session_report::{RunMetadata, ServingMetadata, ServingReport};

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

/// The serving report of the run at `input` from the records `serving`
/// names, read in one pass: each record is counted and dropped, so a run
/// of many requests is never held.
pub(crate) fn report(input: &Path, serving: &ServingMetadata) -> Result<ServingReport, Error> {
    let mut tally = ServingTally::default();
    for_each_record(input, serving, &mut |record| tally.add(&record))?;
    Ok(tally.report(serving))
}

/// The per-request records `serving` names in the run folder `input`.
fn read_records(input: &Path, serving: &ServingMetadata) -> Result<Vec<RequestRecord>, Error> {
    let mut records = Vec::new();
    for_each_record(input, serving, &mut |record| records.push(record))?;
    Ok(records)
}

/// Hands each record of the file `serving` names in the run folder
/// `input` to `each`, in file order. The file must be a plain relative
/// path inside the run folder.
fn for_each_record(
    input: &Path,
    serving: &ServingMetadata,
    each: &mut dyn FnMut(RequestRecord),
) -> Result<(), Error> {
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
    for (idx, line) in std::io::BufRead::lines(std::io::BufReader::new(file)).enumerate() {
        let line = line.map_err(read)?;
        let record =
            serving_workload::record::parse_record_line(&line, idx + 1).map_err(|err| {
                Error::Records {
                    path: path.clone(),
                    detail: err.to_string(),
                }
            })?;
        record.into_iter().for_each(&mut *each);
    }
    Ok(())
}
