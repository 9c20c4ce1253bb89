package gitcache

import (
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"

	"github.com/comfy-image/comfy-image/internal/repourl"
)

// SSHKeyEnv names a private key file for ssh repositories when no ssh
// agent is running (SSH_AUTH_SOCK unset); SSHKeyPassphraseEnv its
// passphrase, if any.
const (
	SSHKeyEnv           = "COMFY_IMAGE_SSH_KEY"
	SSHKeyPassphraseEnv = "COMFY_IMAGE_SSH_KEY_PASSPHRASE"
)

// isSSH tells ssh:// and scp-like (git@host:org/repo) URLs.
func isSSH(repo string) bool {
	if scpLike.MatchString(repo) {
		return true
	}
	u, err := url.Parse(repo)
	return err == nil && u.Scheme == "ssh"
}

// sshUser is the user an ssh URL names ("git" when it names none).
func sshUser(repo string) string {
	if m := scpLike.FindStringSubmatch(repo); m != nil {
		return m[1]
	}
	if u, err := url.Parse(repo); err == nil && u.User != nil && u.User.Username() != "" {
		return u.User.Username()
	}
	return "git"
}

// sshAuth is the key file of SSHKeyEnv when set, else the ssh agent; with
// neither, an error that says what to set. Host keys are checked against
// ~/.ssh/known_hosts (go-git's default).
func sshAuth(repo string) (transport.AuthMethod, error) {
	user := sshUser(repo)
	if file := os.Getenv(SSHKeyEnv); file != "" {
		auth, err := gitssh.NewPublicKeysFromFile(user, file, os.Getenv(SSHKeyPassphraseEnv))
		if err != nil {
			return nil, fmt.Errorf("repo %s: ssh key %s (%s): %s", repourl.Redact(repo), file, SSHKeyEnv, strings.Join(strings.Fields(err.Error()), " "))
		}
		return auth, nil
	}
	if os.Getenv("SSH_AUTH_SOCK") == "" {
		return nil, fmt.Errorf("repo %s: an ssh repository needs a key: start an ssh agent holding one (SSH_AUTH_SOCK), or set %s to a private key file", repourl.Redact(repo), SSHKeyEnv)
	}
	auth, err := gitssh.NewSSHAgentAuth(user)
	if err != nil {
		return nil, fmt.Errorf("repo %s: ssh agent (SSH_AUTH_SOCK): %w", repourl.Redact(repo), err)
	}
	return auth, nil
}
