package server

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
)

// checkPermissions looks at who else may read the data directory and the
// secrets in it before the server uses them: the directory should be 0700,
// the credentials, the store (which holds the accounts' secret keys) and the
// private keys 0600. Looser modes are logged as warnings; a private key that
// users outside its owner and group may read or write is refused, since it
// is then no longer private. Missing files are not checked: the server
// creates them with the right modes.
func checkPermissions(log *slog.Logger, dir string, privateKeys, secrets []string) error {
	if runtime.GOOS == "windows" {
		return nil // no Unix modes to check
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the data directory is accessible to other users; it holds the store, the TLS keys and the admin credentials: chmod 700 it",
			"dir", dir, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	for _, path := range privateKeys {
		mode, ok, err := permOf(path)
		if err != nil || !ok {
			continue // a file that cannot be read fails where it is loaded
		}
		if mode&0o007 != 0 {
			return fmt.Errorf("private key %s is accessible to every user (mode %04o); the server refuses it: chmod 600 it (and replace it if others may have read it)", path, mode)
		}
		if mode&0o077 != 0 {
			log.Warn("private key is accessible to its group; chmod 600 it", "file", path, "mode", fmt.Sprintf("%04o", mode))
		}
	}
	for _, path := range secrets {
		if mode, ok, _ := permOf(path); ok && mode&0o077 != 0 {
			log.Warn("secret file is accessible to other users; chmod 600 it", "file", path, "mode", fmt.Sprintf("%04o", mode))
		}
	}
	return nil
}

// permOf is a file's permission bits, and whether it exists.
func permOf(path string) (fs.FileMode, bool, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, err
	}
	return fi.Mode().Perm(), true, nil
}

// createPrivate creates path empty with mode 0600 unless it exists, so that
// a file another library then opens (the SQLite store, whose journal files
// take its mode) is never readable by others.
func createPrivate(path string) error {
	f, err := os.OpenFile(filepath.Clean(path), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}
