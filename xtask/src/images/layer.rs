//! One image layer: a file tree written as a deterministic ustar archive
//! (entries sorted by path, mtime 0, fixed owners, no user/group names), so
//! the same inputs always give the same bytes and therefore the same digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The non-root user every image runs as (distroless convention).
pub const NONROOT: u32 = 65532;
/// Where the CA bundle goes (and where `SSL_CERT_FILE` points).
pub const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Where our files go when the image is layered onto a third-party base:
/// binary in `bin/`, its libraries and dynamic loader in `lib/`, so nothing
/// of the base image is replaced.
pub const PRIVATE_ROOT: &str = "/opt/ambient";

const BLOCK: usize = 512;

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Entry {
    kind: Kind,
    mode: u32,
    owner: u32,
}

/// A file tree; paths are absolute in the image (`/etc/passwd`).
#[derive(Debug, Default)]
pub struct Tree {
    entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// A directory (parents are added as root-owned 0755 directories).
    pub fn dir(&mut self, path: &str, mode: u32, owner: u32) -> Result<()> {
        let key = self.key(path)?;
        self.entries.insert(
            key,
            Entry {
                kind: Kind::Dir,
                mode,
                owner,
            },
        );
        Ok(())
    }

    /// A root-owned regular file.
    pub fn file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<()> {
        let key = self.key(path)?;
        if matches!(self.entries.get(&key), Some(e) if matches!(e.kind, Kind::Dir)) {
            bail!("{path} is already a directory in the image");
        }
        self.entries.insert(
            key,
            Entry {
                kind: Kind::File(data),
                mode,
                owner: 0,
            },
        );
        Ok(())
    }

    /// Normalises `path` and adds its missing parent directories.
    fn key(&mut self, path: &str) -> Result<String> {
        let key = path.trim_matches('/');
        if key.is_empty()
            || key
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
        {
            bail!("bad path in image: {path:?}");
        }
        let mut parent = String::new();
        for part in key
            .split('/')
            .collect::<Vec<_>>()
            .split_last()
            .map_or(&[][..], |(_, p)| p)
        {
            if !parent.is_empty() {
                parent.push('/');
            }
            parent.push_str(part);
            match self.entries.get(&parent) {
                Some(Entry {
                    kind: Kind::File(_),
                    ..
                }) => bail!("/{parent} is a file, cannot hold {path}"),
                Some(_) => {}
                None => {
                    self.entries.insert(
                        parent.clone(),
                        Entry {
                            kind: Kind::Dir,
                            mode: 0o755,
                            owner: 0,
                        },
                    );
                }
            }
        }
        Ok(key.to_owned())
    }

    /// The ustar archive: sorted entries, then two zero blocks.
    pub fn to_tar(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (path, entry) in &self.entries {
            match &entry.kind {
                Kind::Dir => {
                    out.extend_from_slice(&header(&format!("{path}/"), entry, 0, b'5')?);
                }
                Kind::File(data) => {
                    out.extend_from_slice(&header(path, entry, data.len() as u64, b'0')?);
                    out.extend_from_slice(data);
                    out.resize(out.len().next_multiple_of(BLOCK), 0);
                }
            }
        }
        out.resize(out.len() + 2 * BLOCK, 0);
        Ok(out)
    }
}

/// A ustar header block; names longer than 100 bytes use the prefix field.
fn header(name: &str, entry: &Entry, size: u64, typeflag: u8) -> Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    let (prefix, name) = split_name(name)?;
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(entry.mode))?;
    octal(&mut h[108..116], u64::from(entry.owner))?;
    octal(&mut h[116..124], u64::from(entry.owner))?;
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], 0)?;
    h[148..156].fill(b' ');
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], 0)?;
    octal(&mut h[337..345], 0)?;
    h[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum)?;
    h[155] = b' ';
    Ok(h)
}

fn split_name(name: &str) -> Result<(&str, &str)> {
    if name.len() <= 100 {
        return Ok(("", name));
    }
    for (i, _) in name.match_indices('/') {
        let (prefix, rest) = (&name[..i], &name[i + 1..]);
        if prefix.len() <= 155 && !rest.is_empty() && rest.len() <= 100 {
            return Ok((prefix, rest));
        }
    }
    bail!("path too long for a ustar archive: {name}")
}

/// Zero-padded octal with a trailing NUL, as ustar wants.
fn octal(field: &mut [u8], value: u64) -> Result<()> {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    if digits.len() >= field.len() {
        bail!("value {value} does not fit a ustar field");
    }
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
    Ok(())
}

/// A shared library the binary needs: where it goes, where it is read from.
#[derive(Debug, PartialEq, Eq)]
pub struct Library {
    pub image_path: String,
    pub host_file: PathBuf,
}

/// The shared libraries (and dynamic loader) `binary` links, resolved by the
/// host's loader (`ldd`); empty for a static binary.
pub fn linked_libraries(binary: &Path) -> Result<Vec<Library>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("cannot run ldd (glibc's libc-bin) to find the binary's libraries")?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("not a dynamic executable") || text.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("ldd {} failed: {}", binary.display(), text.trim());
    }
    parse_ldd(&text)
}

/// Parses `ldd` output: `name => /path (addr)`, `/loader (addr)`; the vDSO
/// (no path) is skipped; an unresolved library is an error.
pub fn parse_ldd(text: &str) -> Result<Vec<Library>> {
    let mut libs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let target = match line.split_once(" => ") {
            Some((name, rest)) => {
                if rest.starts_with("not found") {
                    bail!("the binary links {name}, which this machine does not have");
                }
                rest
            }
            None => line,
        };
        let path = target.split(" (").next().unwrap_or_default().trim();
        if !path.starts_with('/') {
            continue;
        }
        let host_file = std::fs::canonicalize(path).with_context(|| format!("resolving {path}"))?;
        libs.push(Library {
            image_path: path.to_owned(),
            host_file,
        });
    }
    Ok(libs)
}

/// The root filesystem of a daemon's own image: binary in `/usr/local/bin`,
/// its libraries where its loader looks, CA bundle, `/etc/passwd` and
/// `/etc/group` with the non-root user, its home, and a world-writable `/tmp`.
pub fn daemon_rootfs(binary: &Path, name: &str) -> Result<Tree> {
    let mut tree = Tree::default();
    tree.file(&format!("/usr/local/bin/{name}"), 0o755, read(binary)?)?;
    for lib in linked_libraries(binary)? {
        tree.file(&lib.image_path, 0o755, read(&lib.host_file)?)?;
    }
    let certs = read(Path::new(CA_BUNDLE))
        .context("the images need the host's CA bundle (apt-get install ca-certificates)")?;
    tree.file(CA_BUNDLE, 0o644, certs)?;
    tree.file(
        "/etc/passwd",
        0o644,
        format!("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n").into_bytes(),
    )?;
    tree.file(
        "/etc/group",
        0o644,
        format!("root:x:0:\nnonroot:x:{NONROOT}:\n").into_bytes(),
    )?;
    tree.dir("/home/nonroot", 0o700, NONROOT)?;
    tree.dir("/tmp", 0o1777, 0)?;
    Ok(tree)
}

/// Our files for a third-party base image, all under [`PRIVATE_ROOT`]; the
/// returned command runs the binary through its own loader and libraries.
pub fn private_rootfs(binary: &Path, name: &str) -> Result<(Tree, Vec<String>)> {
    let mut tree = Tree::default();
    let bin = format!("{PRIVATE_ROOT}/bin/{name}");
    tree.file(&bin, 0o755, read(binary)?)?;
    let libs = linked_libraries(binary)?;
    let mut loader = None;
    for lib in &libs {
        let file = Path::new(&lib.image_path)
            .file_name()
            .and_then(|f| f.to_str())
            .with_context(|| format!("odd library path {}", lib.image_path))?;
        let path = format!("{PRIVATE_ROOT}/lib/{file}");
        if file.starts_with("ld-") {
            loader = Some(path.clone());
        }
        tree.file(&path, 0o755, read(&lib.host_file)?)?;
    }
    let command = match loader {
        Some(loader) => vec![
            loader,
            "--library-path".into(),
            format!("{PRIVATE_ROOT}/lib"),
            bin,
        ],
        None if libs.is_empty() => vec![bin],
        None => bail!(
            "{} links libraries but ldd named no loader",
            binary.display()
        ),
    };
    Ok((tree, command))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(h: &[u8], range: std::ops::Range<usize>) -> String {
        String::from_utf8_lossy(&h[range])
            .trim_end_matches('\0')
            .to_owned()
    }

    #[test]
    fn tar_is_sorted_with_parents_and_fixed_metadata() -> Result<()> {
        let mut t = Tree::default();
        t.file("/usr/local/bin/x", 0o755, b"abc".to_vec())?;
        t.dir("/tmp", 0o1777, 0)?;
        t.dir("/home/nonroot", 0o700, NONROOT)?;
        let tar = t.to_tar()?;
        let names: Vec<String> = tar
            .chunks(BLOCK)
            .filter(|b| b[257..262] == *b"ustar")
            .map(|b| field(b, 0..100))
            .collect();
        assert_eq!(
            names,
            [
                "home/",
                "home/nonroot/",
                "tmp/",
                "usr/",
                "usr/local/",
                "usr/local/bin/",
                "usr/local/bin/x"
            ]
        );
        let home = &tar[BLOCK..2 * BLOCK];
        assert_eq!(field(home, 100..108), "0000700");
        assert_eq!(field(home, 108..116), "0177774");
        assert_eq!(field(home, 136..148), "00000000000");
        // header + 6 more headers + one data block + two end blocks
        assert_eq!(tar.len(), (7 + 1 + 2) * BLOCK);
        Ok(())
    }

    #[test]
    fn checksum_matches_the_ustar_rule() -> Result<()> {
        let mut t = Tree::default();
        t.file("/etc/passwd", 0o644, b"root".to_vec())?;
        let tar = t.to_tar()?;
        let h = &tar[BLOCK..2 * BLOCK];
        let mut blank = h.to_vec();
        blank[148..156].fill(b' ');
        let sum: u64 = blank.iter().map(|&b| u64::from(b)).sum();
        assert_eq!(field(h, 148..154), format!("{sum:06o}"));
        assert_eq!(field(h, 124..136), "00000000004");
        Ok(())
    }

    #[test]
    fn long_paths_use_the_prefix_and_too_long_ones_fail() -> Result<()> {
        let (a, b, f) = ("a".repeat(60), "b".repeat(60), "f".repeat(90));
        let mut t = Tree::default();
        t.file(&format!("/{a}/{b}/{f}"), 0o644, Vec::new())?;
        let tar = t.to_tar()?;
        let file = &tar[2 * BLOCK..3 * BLOCK];
        assert_eq!(field(file, 0..100), f);
        assert_eq!(field(file, 345..500), format!("{a}/{b}"));
        let dir = &tar[BLOCK..2 * BLOCK];
        assert_eq!(field(dir, 0..100), format!("{b}/"));
        assert_eq!(field(dir, 345..500), a);
        // One path component longer than 100 bytes cannot be written.
        let mut t = Tree::default();
        t.file(&format!("/{}", "x".repeat(120)), 0o644, Vec::new())?;
        assert!(t.to_tar().is_err());
        Ok(())
    }

    #[test]
    fn bad_paths_and_file_dir_clashes_are_refused() -> Result<()> {
        let mut t = Tree::default();
        assert!(t.file("/a/../b", 0o644, Vec::new()).is_err());
        assert!(t.file("/", 0o644, Vec::new()).is_err());
        t.file("/a", 0o644, Vec::new())?;
        assert!(t.file("/a/b", 0o644, Vec::new()).is_err());
        assert!(t.file("/tmp", 0o644, Vec::new()).is_ok());
        t.dir("/d", 0o755, 0)?;
        assert!(t.file("/d", 0o644, Vec::new()).is_err());
        Ok(())
    }

    #[test]
    fn ldd_output_is_parsed_and_unresolved_libraries_fail() -> Result<()> {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /bin/sh (0x00007f)\n\t/bin/sh (0x00007f)\n";
        let libs = parse_ldd(text)?;
        assert_eq!(libs.len(), 2);
        assert_eq!(libs[0].image_path, "/bin/sh");
        assert!(libs[1].host_file.is_absolute());
        assert!(parse_ldd("\tlibfoo.so.1 => not found\n").is_err());
        Ok(())
    }

    #[test]
    fn this_test_binary_has_its_libraries_found() -> Result<()> {
        let exe = std::env::current_exe()?;
        let libs = linked_libraries(&exe)?;
        assert!(
            libs.iter().any(|l| l.image_path.contains("libc.so")),
            "{libs:?}"
        );
        let (tree, command) = private_rootfs(&exe, "t")?;
        assert_eq!(
            command.last().map(String::as_str),
            Some("/opt/ambient/bin/t")
        );
        assert!(command[0].starts_with("/opt/ambient/lib/ld-"));
        assert!(tree.entries.keys().all(|k| k.starts_with("opt")));
        Ok(())
    }
}
