//! The one-shot commands: put, get (files and folders), ls, rm, lookup, status.

use std::path::PathBuf;

use anyhow::Result;
use chord_p2p::chord::Id;
use chord_p2p::client::{Client, ClientError};
use chord_p2p::files::folder::{self, FolderError, FolderGetReport};
use chord_p2p::files::{FilesError, Ticket};
use chord_p2p::net;

use super::args::RateArgs;
use super::ask::{connect, connect_for, Ask};
use super::local::*;
use super::progress::with_progress;
use super::{emit, output, usage};

pub(super) async fn put(
    file: &std::path::Path,
    name: Option<String>,
    rate: RateArgs,
    args: &Ask<'_>,
    json: bool,
) -> Result<()> {
    // Fail before connecting anywhere if the file is not there.
    let folder = input_kind(file)?;
    let name = match name {
        Some(name) => name,
        None if folder => default_folder_name(file)?,
        None => default_name(file)?,
    };
    if !folder && folder::is_folder_name(&name) {
        return Err(usage(format!(
            "'{name}' ends with /, which names a folder; put a folder under it, or drop the /"
        )));
    }
    let (mut client, entry) = connect(args).await?;
    client.set_rate_limit(rate.limit_rate);
    if folder {
        return put_folder(client, entry, file, &name, json).await;
    }
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.put(e, file, &name, Some(&*tick)).await
    })
    .await;
    let (report, ticket) = with_ticket(&client, &entry, report, |r| &r.name).await?;
    emit(if json {
        output::with_ticket(output::put_json(&report), &ticket).to_string()
    } else {
        format!(
            "{}\n{}",
            output::put_text(&report),
            output::ticket_text(&ticket)
        )
    });
    Ok(())
}

/// A put's result and, when it worked, the ticket for it; the client is closed either way.
async fn with_ticket<R>(
    client: &Client,
    entry: &net::PeerRef,
    report: Result<R, ClientError>,
    name: impl FnOnce(&R) -> &str,
) -> Result<(R, String)> {
    let ticket = match &report {
        Ok(r) => client.ticket(entry, name(r)).await.encode(),
        Err(_) => String::new(),
    };
    client.close().await;
    Ok((report?, ticket))
}

/// `put DIR`: every file, then the manifest, with progress over the whole folder.
pub(super) async fn put_folder(
    client: Client,
    entry: net::PeerRef,
    dir: &std::path::Path,
    name: &str,
    json: bool,
) -> Result<()> {
    let (c, e) = (&client, &entry);
    let report = with_progress(json, |tick| async move {
        c.put_folder(e, dir, name, Some(&*tick)).await
    })
    .await;
    let (report, ticket) = with_ticket(&client, &entry, report, |r| &r.name).await?;
    emit(if json {
        output::folder_put_json(&report, &ticket).to_string()
    } else {
        output::folder_put_text(&report, &ticket)
    });
    Ok(())
}

/// The ticket `name` is, if it is one (`chord:…`).
fn ticket_of(name: &str) -> Result<Option<Ticket>> {
    if !Ticket::is_ticket(name) {
        return Ok(None);
    }
    Ticket::decode(name)
        .map(Some)
        .map_err(|e| usage(e.to_string()))
}

/// `get NAME --range START-END`: those bytes only, to a file or (`-o -`) to stdout.
pub(super) async fn get_range(
    name: &str,
    (first, last): (u64, u64),
    output: Option<PathBuf>,
    force: bool,
    args: &Ask<'_>,
    json: bool,
) -> Result<()> {
    let ticket = ticket_of(name)?;
    let name = ticket.as_ref().map_or(name, |t| t.name.as_str());
    let to_stdout = output.as_deref() == Some(std::path::Path::new("-"));
    let path = match to_stdout {
        true => None,
        false => Some(output_path(name, output, force)?),
    };
    let (client, entry) = connect_for(args, ticket.as_ref()).await?;
    let report = match &path {
        None => {
            let mut stdout = std::io::stdout();
            let read = client
                .get_range(&entry, name, first, last, &mut stdout)
                .await;
            let _ = std::io::Write::flush(&mut stdout);
            read
        }
        Some(path) => {
            let mut file = std::fs::File::create(path)
                .map_err(|e| usage(format!("cannot write {}: {e}", path.display())))?;
            let written = client.get_range(&entry, name, first, last, &mut file).await;
            if written.is_err() {
                let _ = std::fs::remove_file(path);
            }
            written
        }
    };
    client.close().await;
    let report = report?;
    // The bytes themselves went to stdout: no result line among them.
    if let Some(path) = path {
        emit(if json {
            output::range_json(&report, &path).to_string()
        } else {
            output::range_text(&report, &path)
        });
    }
    Ok(())
}

pub(super) async fn get(
    name: &str,
    output: Option<PathBuf>,
    force: bool,
    rate: RateArgs,
    args: &Ask<'_>,
    json: bool,
) -> Result<()> {
    let ticket = ticket_of(name)?;
    let name = ticket.as_ref().map_or(name, |t| t.name.as_str());
    let ticket = ticket.as_ref();
    if folder::is_folder_name(name) {
        let target = folder_target(name, output, force)?;
        let (mut client, entry) = connect_for(args, ticket).await?;
        client.set_rate_limit(rate.limit_rate);
        return get_folder(client, entry, name, &target, force, json).await;
    }
    let out = match output_path(name, output.clone(), force) {
        Ok(out) => out,
        // A folder is there: the name is taken as a folder's, to resume a get under way
        // into it, or to write into it with `force`.
        Err(e) => match folder_place(name, output) {
            Ok(target) if target.is_dir() => {
                check_folder_target(&target, force)?;
                let (mut client, entry) = connect_for(args, ticket).await?;
                client.set_rate_limit(rate.limit_rate);
                return get_folder(client, entry, name, &target, force, json).await;
            }
            _ => return Err(e),
        },
    };
    let (mut client, entry) = connect_for(args, ticket).await?;
    client.set_rate_limit(rate.limit_rate);
    let (c, e, o) = (&client, &entry, &out);
    let report = with_progress(
        json,
        |tick| async move { c.get(e, name, o, Some(&*tick)).await },
    )
    .await;
    let report = match report {
        // No file has that name: perhaps a folder does (its manifest is `name/`).
        Err(ClientError::Files(FilesError::NotFound(missing))) => {
            let folder = match folder_target(name, output, force) {
                Ok(target) => {
                    let folder = folder::folder_name(name);
                    Some(fetch_folder(c, e, &folder, &target, force, json).await)
                }
                Err(_) => None,
            };
            client.close().await;
            return match folder {
                Some(Err(ClientError::Folder(FolderError::Files(FilesError::NotFound(_)))))
                | None => Err(FilesError::NotFound(missing).into()),
                Some(folder) => print_folder(folder?, json),
            };
        }
        other => other,
    };
    client.close().await;
    let report = report.map_err(|e| resumable(e, &out))?;
    emit(if json {
        output::get_json(&report).to_string()
    } else {
        output::get_text(&report)
    });
    Ok(())
}

/// A get that stopped with bytes kept: the error says the same command resumes.
#[derive(Debug, thiserror::Error)]
#[error("{cause}; {kept} kept in {partial}: run the same get again to resume")]
struct Resumable {
    #[source]
    cause: ClientError,
    kept: String,
    partial: String,
}

fn resumable(cause: ClientError, out: &std::path::Path) -> anyhow::Error {
    let partial = chord_p2p::files::transfer::partial_path(out);
    match std::fs::metadata(&partial) {
        Ok(meta) if meta.len() > 0 => Resumable {
            cause,
            kept: output::size_text(meta.len()),
            partial: partial.display().to_string(),
        }
        .into(),
        _ => cause.into(),
    }
}

/// Gets a folder with progress over all its files.
pub(super) async fn fetch_folder(
    client: &Client,
    entry: &net::PeerRef,
    name: &str,
    target: &std::path::Path,
    force: bool,
    json: bool,
) -> Result<FolderGetReport, ClientError> {
    with_progress(json, |tick| async move {
        client
            .get_folder(entry, name, target, force, Some(&*tick))
            .await
    })
    .await
}

/// `get NAME/`: the folder into `target`, then what it did.
pub(super) async fn get_folder(
    client: Client,
    entry: net::PeerRef,
    name: &str,
    target: &std::path::Path,
    force: bool,
    json: bool,
) -> Result<()> {
    let folder = folder::folder_name(name);
    let report = fetch_folder(&client, &entry, &folder, target, force, json).await;
    client.close().await;
    print_folder(report?, json)
}

pub(super) fn print_folder(report: FolderGetReport, json: bool) -> Result<()> {
    emit(if json {
        output::folder_get_json(&report).to_string()
    } else {
        output::folder_get_text(&report)
    });
    Ok(())
}

pub(super) async fn ls(args: &Ask<'_>, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let files = client.list(&entry).await;
    client.close().await;
    let files = files?;
    emit(if json {
        output::files_json(&files).to_string()
    } else {
        output::files_text(&files)
    });
    Ok(())
}

pub(super) async fn ls_ring(args: &Ask<'_>, max_members: usize, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let listing = client.list_ring(&entry, max_members).await;
    client.close().await;
    let listing = listing?;
    emit(if json {
        output::ring_files_json(&listing).to_string()
    } else {
        output::ring_files_text(&listing)
    });
    Ok(())
}

pub(super) async fn rm(name: &str, args: &Ask<'_>, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let copies = client.remove(&entry, name).await;
    client.close().await;
    let copies = copies?;
    emit(output::removed(name, copies, json));
    Ok(())
}

pub(super) async fn lookup(name: &str, args: &Ask<'_>, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let result = client.lookup(&entry, Id::hash(name.as_bytes())).await;
    client.close().await;
    let result = result?;
    if json {
        emit(output::lookup_json(name, &result));
    } else {
        emit(output::lookup_text(name, &result));
    }
    Ok(())
}

pub(super) async fn status(args: &Ask<'_>, json: bool) -> Result<()> {
    let (client, entry) = connect(args).await?;
    let report = client.status(&entry).await;
    client.close().await;
    let report = report?;
    if json {
        emit(output::status_json(&report));
    } else {
        emit(output::status_text(&report));
    }
    Ok(())
}
