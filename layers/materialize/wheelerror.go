package materialize

// WheelMemberError is a wheel's content refused for safety (a member
// whose path leaves the venv or its scheme's folder, a console script
// that is not a plain name, a file that would replace the venv's own): the
// wheel came from outside (an index, --find-links), so it is bad input
// (exit code 2), not a failure of ours. The caller's wrap names the wheel;
// Err names the member.
type WheelMemberError struct {
	Err error
}

// refusedMember marks err as a refused wheel member.
func refusedMember(err error) error {
	return &WheelMemberError{Err: err}
}

func (e *WheelMemberError) Error() string { return e.Err.Error() }

func (e *WheelMemberError) Unwrap() error { return e.Err }

// BadInput marks the error as the input's fault (exit code 2).
func (e *WheelMemberError) BadInput() bool { return true }
