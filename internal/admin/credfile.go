package admin

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Writing a profile into an AWS shared credentials file (the INI file the
// SDKs read as ~/.aws/credentials or AWS_SHARED_CREDENTIALS_FILE).

// credentialKeys are the settings a profile's new keys replace. A session
// token belongs to the keys it came with.
var credentialKeys = map[string]bool{"aws_access_key_id": true, "aws_secret_access_key": true, "aws_session_token": true}

var sectionPattern = regexp.MustCompile(`^\s*\[\s*([^\]]*?)\s*\]\s*(?:[#;].*)?$`)

// validProfileName checks that a profile name can be written as a section
// header and read back as the same name.
func validProfileName(name string) bool {
	return name != "" && strings.TrimSpace(name) == name && !strings.ContainsAny(name, "[]\r\n#;")
}

// mergeCredentials returns the credentials file content with profile's keys
// set: an existing section of that name loses its old keys (and any session
// token) and keeps its other settings; every other line stays as it was. A
// missing section is appended.
func mergeCredentials(content, profile, accessKeyID, secretAccessKey string) string {
	keys := "aws_access_key_id = " + accessKeyID + "\naws_secret_access_key = " + secretAccessKey + "\n"
	var b strings.Builder
	inProfile, found := false, false
	for _, line := range strings.SplitAfter(content, "\n") {
		if line == "" {
			continue
		}
		if m := sectionPattern.FindStringSubmatch(strings.TrimRight(line, "\r\n")); m != nil {
			inProfile = m[1] == profile
			b.WriteString(line)
			if !strings.HasSuffix(line, "\n") {
				b.WriteString("\n")
			}
			if inProfile && !found {
				b.WriteString(keys)
				found = true
			}
			continue
		}
		if inProfile {
			key, _, ok := strings.Cut(line, "=")
			if ok && credentialKeys[strings.ToLower(strings.TrimSpace(key))] {
				continue
			}
		}
		b.WriteString(line)
	}
	if !found {
		s := b.String()
		if s != "" && !strings.HasSuffix(s, "\n") {
			b.WriteString("\n")
		}
		if s != "" {
			b.WriteString("\n")
		}
		b.WriteString("[" + profile + "]\n" + keys)
	}
	return b.String()
}

// credentialsFile is a shared credentials file about to receive a profile.
type credentialsFile struct {
	path    string // the file itself, symbolic links resolved
	content string // what it holds now ("" if it does not exist yet)
}

// readCredentialsFile reads the file at path, which need not exist yet.
// Reading it before the account is created finds an unusable path while
// nothing is lost yet.
func readCredentialsFile(path string) (*credentialsFile, error) {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err == nil {
		if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("%s is not a regular file", path)
		}
	}
	return &credentialsFile{path: path, content: string(b)}, nil
}

// writeProfile merges profile's keys into the file and replaces it
// atomically, readable by its owner only (0600); its directory is created
// (0700) if missing.
func (f *credentialsFile) writeProfile(profile, accessKeyID, secretAccessKey string) error {
	dir := filepath.Dir(f.path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.WriteString(mergeCredentials(f.content, profile, accessKeyID, secretAccessKey)); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path)
}
