//go:build !unix

package realize

const noFollow = 0
