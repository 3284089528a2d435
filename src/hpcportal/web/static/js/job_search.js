// The jobs page's keyboard shortcut: "/" focuses the name search (as on GitHub or
// Gmail) unless the person is already typing somewhere; the jump box beside it goes
// straight to a job id (/jobs/go?id=..., which works without JavaScript too).

const search = document.querySelector('[data-testid="jobs-search"]');

function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

if (search) {
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) return;
    event.preventDefault();
    search.focus();
    search.select();
  });
}
